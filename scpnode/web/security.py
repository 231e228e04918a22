"""Sessions, login, roles, CSRF tokens and response headers of the web UI.

Sessions are Starlette's signed cookies (itsdangerous HMAC): HttpOnly,
SameSite=Strict, ``Secure`` unless ``[web] secure_cookies = false``, expiring
after ``[web] session_hours``. They are signed with the installation's key
from the node database (:mod:`scpnode.web.session_key`), so a restart keeps
users logged in and ``scpnode users rotate-session-key`` logs everyone out.
The cookie holds a session token, the CSRF token and where to go after
logging in; the session itself is a row in the node database
(:func:`scpnode.web.users.start_session`), looked up on every request, so logging
out, a new password or disabling the user ends it for every copy of the
cookie. The worklist search term (a patient ID typed into the search box)
travels in a POST body and is kept in that row: never in the cookie, nor in a
URL that access logs or proxies record. Failed logins are rate limited
(:mod:`scpnode.web.login_throttle`).

CSRF: the synchroniser-token pattern (OWASP CSRF Prevention Cheat Sheet):
every form carries the session's random token, compared in constant time on
every POST; with SameSite=Strict cookies this is defence in depth.
"""

from __future__ import annotations

import hmac
import secrets
import time

import sqlite_utils
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from scpnode.web import users

SESSION_COOKIE = "scpnode_session"
CSRF_FIELD = "csrf_token"


class LoginRequired(Exception):
    """Raised by :func:`require_user` when the request has no valid session; answered with the login page."""


def csrf_token(request: Request) -> str:
    """The session's CSRF token (made on first use)."""
    token = request.session.get("csrf")
    if not token:
        token = request.session["csrf"] = secrets.token_urlsafe(32)
    return token


def check_csrf(request: Request, form: FormData) -> None:
    """Raise 403 unless the form carries this session's CSRF token."""
    expected = request.session.get("csrf", "")
    sent = form.get(CSRF_FIELD, "")
    if not expected or not isinstance(sent, str) or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise HTTPException(403, "The form's security token is missing or out of date. "
                                 "Go back, reload the page and try again.")


def log_in(request: Request, db: sqlite_utils.Database, user: users.User, lifetime_seconds: float) -> None:
    """Start a fresh session for ``user`` (new token and CSRF token: nothing from before the login carries over)."""
    next_path = request.session.get("next", "")
    request.session.clear()
    token = users.start_session(db, user.id, lifetime_seconds)
    request.session.update({"sid": token, "csrf": secrets.token_urlsafe(32)})
    if next_path:
        request.session["next"] = next_path


def _session_token(request: Request) -> str | None:
    token = request.session.get("sid")
    return token if isinstance(token, str) else None


def log_out(request: Request, db: sqlite_utils.Database) -> None:
    """End the session in the database (every copy of the cookie) and clear the cookie."""
    token = _session_token(request)
    if token is not None:
        users.end_session(db, token)
    request.session.clear()


def current_user(request: Request, db: sqlite_utils.Database) -> users.User | None:
    """The logged-in user if the session is open and its user enabled, else None."""
    token = _session_token(request)
    return users.session_user(db, token) if token is not None else None


def search_term(request: Request, db: sqlite_utils.Database) -> str:
    """The worklist search term of this session ("" when none)."""
    token = _session_token(request)
    return users.session_search(db, token) if token is not None else ""


def set_search_term(request: Request, db: sqlite_utils.Database, term: str) -> None:
    token = _session_token(request)
    if token is not None:
        users.set_session_search(db, token, term)


def require_user(request: Request, db: sqlite_utils.Database, *, admin: bool = False) -> users.User:
    """The logged-in, enabled user; :class:`LoginRequired` without one, 403 when ``admin`` is needed."""
    user = current_user(request, db)
    if user is None:
        request.session.pop("sid", None)
        if request.method == "GET" and _safe_next(request.url.path):
            request.session["next"] = request.url.path
        raise LoginRequired()
    if admin and not user.is_admin:
        raise HTTPException(403, "This page is for administrators.")
    return user


def pop_next_path(request: Request) -> str:
    """Where to go after logging in: the page that asked for a login, else the worklist."""
    path = request.session.pop("next", "")
    return path if _safe_next(path) else "/worklist"


def _safe_next(path: str) -> bool:
    # Local paths only (no "//host" or scheme): an open redirect would let a
    # link send a coordinator from the login page to another site.
    return path.startswith("/") and not path.startswith("//") and path not in ("/login", "/logout")


CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


class SecurityHeaders:
    """ASGI middleware: security headers on every response and ``Server-Timing`` with the app's time.

    ``Cache-Control: no-store`` because pages carry patient data that must not
    stay in shared or browser caches; ``Server-Timing: app;dur=<ms>`` (W3C
    Server Timing) is the time until the response started, read by the
    benchmark and visible in the browser's developer tools.
    """

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                elapsed_ms = (time.perf_counter() - started) * 1000
                headers = list(message.get("headers", []))
                headers += [
                    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
                    (b"x-frame-options", b"DENY"),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"cache-control", b"no-store"),
                    (b"server-timing", f"app;dur={elapsed_ms:.1f}".encode()),
                ]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
