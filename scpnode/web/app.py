"""The coordinator's web UI: a Starlette app with server-rendered Jinja2 pages.

Pages: login, worklist (filters, sort, search, paging, counts per status, CSV
export), study detail (identifiers, per-level table, risk, overlay, PACS
viewer link, review actions with audit log, and the vertebral levels: a
sagittal and coronal picture of every labelled vertebra where a reviewer
confirms the labels, moves them, or clicks the vertebra that is T12 or L1;
:mod:`scpnode.pipeline.level_review`) and, for admins, node status
(jobs with retry, outbox, peers, disk use, security audit log). No
JavaScript: every action is a plain form. Failed logins are rate limited
(:mod:`scpnode.web.login_throttle`).
``/healthz`` answers monitoring without a login (:mod:`scpnode.web.health`).

URLs carry only row ids and filter values (status, categories, dates, sort);
patient IDs and accession numbers typed into the search box go in a POST
body and the session (see :mod:`scpnode.web.security`), so access logs of
uvicorn and of a reverse proxy hold no patient data.

Handlers are plain functions run in Starlette's thread pool; each thread
uses its own SQLite connection (:class:`scpnode.db.ThreadDatabases`).
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote, urlencode

import anyio.from_thread
import sqlite_utils
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from inference.segment.anchors import SPINE_SEQUENCE
from inference.segment.level_view import LevelView
from scpnode import schema, worklist
from scpnode.config import Settings
from scpnode.db import ThreadDatabases
from scpnode.logs import log_event
from scpnode.pipeline.jobs import CONFIRMABLE_STATES, JobQueue
from scpnode.pipeline.level_review import (
    ANSWERABLE_AS, MAX_LEVEL_SHIFT, LevelAnswer, LevelReviewError, LevelViewFile, answer_level_review,
    reject_segmentation, shown_levels,
)
from scpnode.timestamps import iso_utc
from scpnode.web import users as users_table
from scpnode.web import security_audit
from scpnode.web.health import health_endpoint
from scpnode.web.login_throttle import LoginThrottle
from scpnode.web.node_status import DatabaseNodeStatus, NodeStatusProvider
from scpnode.web.security import (
    SESSION_COOKIE, LoginRequired, SecurityHeaders, check_csrf, csrf_token, current_user, log_in, log_out,
    pop_next_path, require_user, search_term, set_search_term,
)
from scpnode.web.session_key import RotatingSessionMiddleware, ensure_session_key
from scpnode.worklist import FlagReason, LevelStatus, Status, WorklistError

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
SECURITY_EVENTS_SHOWN = 20
"""Latest security audit events on the admin's status page."""
NodeStatusFactory = Callable[[sqlite_utils.Database], NodeStatusProvider]
"""Makes the node-status provider for one thread's database connection."""


def create_app(settings: Settings, db: ThreadDatabases, node_status: NodeStatusFactory | None = None,
               login_throttle: LoginThrottle | None = None) -> Starlette:
    """The web UI application.

    Args:
        settings: node configuration (``[web]`` and ``[worklist]`` sections are used).
        db: per-thread connections to the node database.
        node_status: provider of the admin status page; default
            :class:`~scpnode.web.node_status.DatabaseNodeStatus` on the node database.
        login_throttle: failed-login limits; default from ``[web] login_max_failures``
            and ``login_window_minutes``.
    """
    startup_db = db.get()
    schema.prepare(startup_db)
    ensure_session_key(startup_db)
    make_status = node_status or (lambda conn: DatabaseNodeStatus(settings, conn))
    throttle = login_throttle or LoginThrottle(settings.web.login_max_failures,
                                               settings.web.login_window_minutes * 60)
    pages = _Pages(settings, db, make_status, throttle)
    routes = [
        Route("/", pages.home),
        Route("/login", pages.login, methods=["GET", "POST"]),
        Route("/logout", pages.logout, methods=["POST"]),
        Route("/worklist", pages.worklist_page),
        Route("/worklist/search", pages.search, methods=["POST"]),
        Route("/worklist.csv", pages.export),
        Route("/studies/{entry_id:int}", pages.study),
        Route("/studies/{entry_id:int}/overlay.png", pages.overlay),
        Route("/studies/{entry_id:int}/status", pages.change_status, methods=["POST"]),
        Route("/studies/{entry_id:int}/levels.png", pages.level_view),
        Route("/studies/{entry_id:int}/levels", pages.review_levels, methods=["POST"]),
        Route("/admin/status", pages.node_status),
        Route("/admin/jobs/{job_id:int}/retry", pages.retry_job, methods=["POST"]),
        Route("/healthz", health_endpoint(settings, db)),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    middleware = [
        Middleware(SecurityHeaders),
        Middleware(RotatingSessionMiddleware, databases=db, session_cookie=SESSION_COOKIE,
                   max_age=int(settings.web.session_hours * 3600), same_site="strict",
                   https_only=settings.web.secure_cookies),
    ]
    handlers = {HTTPException: pages.http_error, LoginRequired: pages.login_required, Exception: pages.server_error}
    return Starlette(routes=routes, middleware=middleware, exception_handlers=handlers)


class _Pages:
    """The request handlers, sharing settings, templates and database access."""

    def __init__(self, settings: Settings, db: ThreadDatabases, make_status: NodeStatusFactory,
                 throttle: LoginThrottle):
        self.settings = settings
        self.db = db
        self.make_status = make_status
        self.throttle = throttle
        self.templates = Jinja2Templates(directory=HERE / "templates")
        self.templates.env.globals.update(Status=Status, FlagReason=FlagReason, LevelStatus=LevelStatus,
                                          risk_categories=worklist.RISK_CATEGORIES,
                                          vbmd_categories=worklist.VBMD_CATEGORIES,
                                          uncalibrated=worklist.UNCALIBRATED)
        self.templates.env.filters.update(number=_number, person_name=_person_name, utc=iso_utc)
        self.templates.env.globals.update(spine_after_t12=lambda n: SPINE_SEQUENCE[SPINE_SEQUENCE.index("T12") + n])

    def render(self, request: Request, template: str, status_code: int = 200, headers: dict[str, str] | None = None,
               **context) -> Response:
        context.setdefault("user", None)
        context.update(csrf=csrf_token(request), flash=request.session.pop("flash", ""))
        return self.templates.TemplateResponse(request, template, context, status_code=status_code, headers=headers)

    # ------------------------------------------------------------ login

    def home(self, request: Request) -> Response:
        return RedirectResponse("/worklist", status_code=303)

    def login(self, request: Request) -> Response:
        if request.method == "GET":
            return self.render(request, "login.html", no_users=not users_table.list_users(self.db.get()))
        form = _form(request)
        check_csrf(request, form)
        db = self.db.get()
        username = str(form.get("username", ""))
        attempt = self.throttle.begin(db, username, request.client.host if request.client else "unknown")
        if attempt.refused:
            # The same answer for every user name, existing or not.
            return self.render(request, "login.html", status_code=429, username=username,
                               error=f"Too many failed logins. Try again in {attempt.retry_after_minutes} "
                                     f"minute{'s' if attempt.retry_after_minutes > 1 else ''}.",
                               headers={"retry-after": str(math.ceil(attempt.retry_after_seconds))})
        user = users_table.authenticate(db, username, str(form.get("password", "")))
        if user is None:
            self.throttle.failed(db, attempt)
            log_event(log, "web_login_failed", logging.WARNING, username=attempt.username)
            return self.render(request, "login.html", status_code=401, error="Unknown user or wrong password.",
                               username=username)
        self.throttle.succeeded(db, attempt)
        log_in(request, db, user, self.settings.web.session_hours * 3600)
        log_event(log, "web_login", username=user.username, role=user.role.value)
        return RedirectResponse(pop_next_path(request), status_code=303)

    def logout(self, request: Request) -> Response:
        check_csrf(request, _form(request))
        log_out(request, self.db.get())
        return RedirectResponse("/login", status_code=303)

    # ------------------------------------------------------------ worklist

    def worklist_page(self, request: Request) -> Response:
        db = self.db.get()
        user = require_user(request, db)
        query = replace(self._query(request), levels_first=user.role is users_table.Role.REVIEWER)
        page = worklist.query_worklist(db, query)
        filters = query.filter_params()
        return self.render(request, "worklist.html", user=user, query=query, page=page, filters=filters,
                           counts=worklist.status_counts(db), sort_links=_sort_links(query, filters),
                           page_link=lambda n: "/worklist?" + urlencode({**filters, "page": n}),
                           status_link=lambda s: "/worklist?" + urlencode(
                               {k: v for k, v in {**filters, "status": s}.items() if v}),
                           export_link="/worklist.csv?" + urlencode(filters))

    def search(self, request: Request) -> Response:
        require_user(request, self.db.get())
        form = _form(request)
        check_csrf(request, form)
        term = str(form.get("search", "")).strip()[:64]
        filters = {k: str(v) for k, v in form.items() if k not in ("search", "csrf_token")}
        query = _parse(filters)
        set_search_term(request, self.db.get(), term)
        return RedirectResponse("/worklist?" + urlencode(query.filter_params()), status_code=303)

    def export(self, request: Request) -> Response:
        db = self.db.get()
        user = require_user(request, db)
        query = self._query(request)
        out = io.StringIO()
        count = worklist.export_csv(db, query, out)
        log_event(log, "worklist_exported", username=user.username, rows=count)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M")
        return Response(out.getvalue(), media_type="text/csv; charset=utf-8",
                        headers={"content-disposition": f'attachment; filename="worklist-{stamp}.csv"'})

    def _query(self, request: Request) -> worklist.WorklistQuery:
        return _parse(dict(request.query_params), search=search_term(request, self.db.get()))

    # ------------------------------------------------------------ study

    def study(self, request: Request) -> Response:
        db = self.db.get()
        user = require_user(request, db)
        return self._study_page(request, db, user, request.path_params["entry_id"])

    def _study_page(self, request: Request, db: sqlite_utils.Database, user: users_table.User, entry_id: int,
                    error: str = "", status_code: int = 200, level_error: str = "") -> Response:
        row = _entry(db, entry_id)
        job = JobQueue(db).latest_for_series(row.series_uid)
        view = LevelViewFile(job.output_dir) if job is not None and job.result_dir else None
        return self.render(request, "study.html", status_code=status_code, user=user, row=row,
                           levels=row.measurements.get("levels", {}), audit=worklist.audit_log(db, entry_id),
                           viewer_url=self._viewer_url(row.study_uid), error=error, level_error=level_error,
                           has_overlay=bool(row.overlay_path) and Path(row.overlay_path).is_file(),
                           job=job, level_view=view.mapping() if view is not None else None,
                           can_review=job is not None and job.state in CONFIRMABLE_STATES and user.reviews_levels,
                           answerable_as=ANSWERABLE_AS, max_shift=MAX_LEVEL_SHIFT)

    def _viewer_url(self, study_uid: str) -> str:
        template = self.settings.web.pacs_viewer_url
        # str.replace, not str.format: the template is free text and may hold other braces.
        return template.replace("{study_uid}", quote(study_uid, safe="")) if template else ""

    def overlay(self, request: Request) -> Response:
        db = self.db.get()
        require_user(request, db)
        row = _entry(db, request.path_params["entry_id"])
        if not row.overlay_path or not Path(row.overlay_path).is_file():
            raise HTTPException(404, "This study has no overlay image.")
        return FileResponse(row.overlay_path, media_type="image/png")

    def level_view(self, request: Request) -> Response:
        db = self.db.get()
        require_user(request, db)
        row = _entry(db, request.path_params["entry_id"])
        job = JobQueue(db).latest_for_series(row.series_uid)
        if job is None or not job.result_dir or not LevelViewFile(job.output_dir).png.is_file():
            raise HTTPException(404, "This study has no picture of its vertebral levels.")
        return FileResponse(LevelViewFile(job.output_dir).png, media_type="image/png",
                            headers={"cache-control": "no-store"})

    def review_levels(self, request: Request) -> Response:
        """A reviewer's answer about the levels: confirm, move every label, or name a vertebra."""
        db = self.db.get()
        user = require_user(request, db)
        form = _form(request)
        check_csrf(request, form)
        entry_id = request.path_params["entry_id"]
        row = _entry(db, entry_id)
        if not user.reviews_levels:
            raise HTTPException(403, "Confirming vertebral levels is for reviewers.")
        job = JobQueue(db).latest_for_series(row.series_uid)
        if job is None:
            raise HTTPException(404, "This study has no inference job.")
        try:
            if form.get("action") == "reject":
                reject_segmentation(db, job.id, user.username, str(form.get("note", ""))[:2000])
                request.session["flash"] = "Segmentation rejected: the study is not scored and nothing is sent."
            else:
                answer = _level_answer(form, LevelViewFile(job.output_dir).mapping(), shown_levels(job))
                outcome = answer_level_review(db, job.id, user.username, answer)
                request.session["flash"] = f"Levels: {outcome.note}. The node is measuring again; results follow."
        except LevelReviewError as exc:
            return self._study_page(request, db, user, entry_id, level_error=str(exc), status_code=400)
        return RedirectResponse(f"/studies/{entry_id}", status_code=303)

    def change_status(self, request: Request) -> Response:
        db = self.db.get()
        user = require_user(request, db)
        form = _form(request)
        check_csrf(request, form)
        entry_id = request.path_params["entry_id"]
        _entry(db, entry_id)
        action, note = str(form.get("action", "")), str(form.get("note", ""))[:2000]
        try:
            worklist.set_status(db, entry_id, action, user.username, note)
        except WorklistError as exc:
            return self._study_page(request, db, user, entry_id, error=str(exc), status_code=400)
        log_event(log, "worklist_status_changed", username=user.username, entry=entry_id, status=action)
        request.session["flash"] = f"Marked {Status(action).label}."
        return RedirectResponse(f"/studies/{entry_id}", status_code=303)

    # ------------------------------------------------------------ admin

    def node_status(self, request: Request) -> Response:
        db = self.db.get()
        user = require_user(request, db, admin=True)
        return self.render(request, "status.html", user=user, status=self.make_status(db).snapshot(),
                           settings=self.settings, security_events=security_audit.recent(db, SECURITY_EVENTS_SHOWN))

    def retry_job(self, request: Request) -> Response:
        db = self.db.get()
        user = require_user(request, db, admin=True)
        check_csrf(request, _form(request))
        job_id = request.path_params["job_id"]
        try:
            self.make_status(db).retry_job(job_id)
        except KeyError:
            raise HTTPException(404, f"There is no job {job_id}.") from None
        except ValueError as exc:
            raise HTTPException(409, str(exc)) from None
        log_event(log, "job_retry_requested", username=user.username, job=job_id)
        request.session["flash"] = f"Job {job_id} is queued again."
        return RedirectResponse("/admin/status", status_code=303)

    # ------------------------------------------------------------ errors

    def http_error(self, request: Request, exc: HTTPException) -> Response:
        titles = {400: "Bad request", 403: "Not allowed", 404: "Not found", 405: "Method not allowed",
                  409: "Cannot do that now"}
        detail = exc.detail if isinstance(exc.detail, str) else ""
        return self.render(request, "error.html", status_code=exc.status_code,
                           title=titles.get(exc.status_code, "Error"), detail=detail,
                           user=current_user(request, self.db.get()))

    def login_required(self, request: Request, exc: LoginRequired) -> Response:
        return RedirectResponse("/login", status_code=303)

    def server_error(self, request: Request, exc: Exception) -> Response:
        log.error("web request failed", exc_info=exc, extra={"event": "web_error", "path": request.url.path})
        return self.templates.TemplateResponse(
            request, "error.html", {"title": "Something went wrong", "user": None, "csrf": "", "flash": "",
                                    "detail": "The error was logged. Try again, or tell the administrator."},
            status_code=500)


def _form(request: Request) -> FormData:
    """The request's form data, read from a handler running in the thread pool (anyio's documented way
    for a worker thread to await something on the event loop)."""
    return anyio.from_thread.run(request.form)


def _level_answer(form: FormData, view: LevelView | None, shown: dict[str, float]) -> LevelAnswer:
    """Read the review form: ``action`` confirm | shift (``shift``) | name (``labelled`` is ``level``),
    or a click on the picture (``at.x``/``at.y``, with ``level``).

    Raises:
        LevelReviewError: a form that says nothing the node can act on.
    """
    level = str(form.get("level", "T12"))
    if "at.y" in form:
        if view is None:
            raise LevelReviewError("this study has no picture to click on; choose the vertebra from the list")
        try:
            row = float(str(form["at.y"]))
        except ValueError:
            raise LevelReviewError("the click on the picture was not understood") from None
        if row < view.top_row:
            raise LevelReviewError("click on a vertebra in the picture, not on its title")
        return LevelAnswer(vertebra_at_mm=view.z_at_row(row), vertebra_is=level)
    action = str(form.get("action", ""))
    if action == "confirm":
        return LevelAnswer()
    if action == "shift":
        try:
            shift = int(str(form.get("shift", "")))
        except ValueError:
            raise LevelReviewError("choose by how many levels to move the labels") from None
        if shift == 0:
            raise LevelReviewError("choose a move of at least one level, or confirm the labels as shown")
        return LevelAnswer(shift=shift)
    if action == "name":
        labelled = str(form.get("labelled", ""))
        if labelled not in shown:
            raise LevelReviewError("choose one of the labelled vertebrae")
        return LevelAnswer(vertebra_at_mm=shown[labelled], vertebra_is=level)
    raise LevelReviewError("the answer was not understood; confirm, move the labels, or name a vertebra")


def _parse(params: dict[str, str], search: str = "") -> worklist.WorklistQuery:
    try:
        return worklist.parse_query(params, search=search)
    except WorklistError as exc:
        raise HTTPException(400, f"Filter not understood: {exc}.") from None


def _entry(db: sqlite_utils.Database, entry_id: int) -> worklist.WorklistRow:
    try:
        return worklist.get_row(db, entry_id)
    except WorklistError:
        raise HTTPException(404, f"There is no worklist entry {entry_id}.") from None


def _sort_links(query: worklist.WorklistQuery, filters: dict[str, str]) -> dict[str, str]:
    """For each sortable column, the link that sorts by it (toggling the order when it is the current sort)."""
    links = {}
    for column in worklist.SORT_COLUMNS:
        ascending = query.sort == column and query.descending
        params = {**filters, "sort": column, "order": "asc" if ascending else "desc"}
        links[column] = "/worklist?" + urlencode(params)
    return links


def _number(value: float | None, digits: int = 0) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _person_name(value: str) -> str:
    """A DICOM PN (``Family^Given^Middle^Prefix^Suffix``, PS3.5 6.2.1) as "Family, Given Middle"."""
    family, _, rest = value.partition("^")
    given = " ".join(part for part in rest.split("^")[:2] if part)
    return f"{family}, {given}" if family and given else family or given
