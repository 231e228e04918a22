"""``scpnode users``: manage the web UI's users (add, list, disable, enable, password), end every session
(rotate-session-key), lift a login lockout (unlock) and read the security audit log (audit)."""

from __future__ import annotations

import argparse
import getpass
import sys

from scpnode.errors import UsageError
from scpnode.schema import open_node_database
from scpnode.timestamps import iso_utc
from scpnode.web import security_audit
from scpnode.web.login_throttle import unlock
from scpnode.web.session_key import rotate_session_key
from scpnode.web.users import (
    Role, UserError, add_user, check_password_rules, list_users, set_disabled, set_password,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("users", help="manage web UI users", description="Manage web UI users.")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="create a user (asks for the password)")
    add.add_argument("username")
    add.add_argument("--role", choices=[r.value for r in Role], default=Role.COORDINATOR.value,
                     help="coordinator works the worklist; admin also sees node status and retries jobs")
    add.add_argument("--password-stdin", action="store_true",
                     help="read the password from the first line of stdin instead of asking")
    actions.add_parser("list", help="list users")
    for name, text in (("disable", "stop a user from logging in (open sessions end at once)"),
                       ("enable", "let a disabled user log in again"),
                       ("password", "set a new password (asks for it)")):
        action = actions.add_parser(name, help=text)
        action.add_argument("username")
        if name == "password":
            action.add_argument("--password-stdin", action="store_true")
    actions.add_parser("rotate-session-key", help="replace the key that signs session cookies: "
                                                  "everyone is logged out at their next click")
    unlock = actions.add_parser("unlock", help="clear the failed logins that lock a user name or client out")
    unlock.add_argument("username", nargs="?", default="", help="the locked-out user name")
    unlock.add_argument("--client", default="", help="a locked-out client address (e.g. a shared workstation)")
    audit = actions.add_parser("audit", help="show the security audit log (login lockouts, key rotations)")
    audit.add_argument("--limit", type=int, default=50, help="how many of the latest events (default 50)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    db = open_node_database(args.settings.node.database)
    try:
        if args.action == "add":
            user = add_user(db, args.username, _read_password(args.password_stdin), args.role)
            print(f"added {user.role.value} {user.username}")
        elif args.action == "list":
            print(f"{'user':<24} {'role':<12} {'state':<9} {'created (UTC)':<26} last login (UTC)")
            for user in list_users(db):
                state = "disabled" if user.disabled else "active"
                print(f"{user.username:<24} {user.role.value:<12} {state:<9} {iso_utc(user.created_at):<26} "
                      f"{iso_utc(user.last_login_at) or 'never'}")
        elif args.action in ("disable", "enable"):
            set_disabled(db, args.username, args.action == "disable")
            print(f"{args.action}d {args.username}")
        elif args.action == "rotate-session-key":
            rotate_session_key(db, by=_operator())
            print("session key replaced: every web UI session has ended")
        elif args.action == "unlock":
            try:
                cleared = unlock(db, username=args.username, client=args.client, by=_operator())
            except ValueError as exc:
                raise UsageError(str(exc)) from None
            print(f"cleared {cleared} failed login(s)")
        elif args.action == "audit":
            print(f"{'at (UTC)':<26} {'event':<20} {'user':<24} {'client':<16} detail")
            for event in security_audit.recent(db, args.limit):
                print(f"{iso_utc(event.at):<26} {event.event:<20} {event.username:<24} {event.client:<16} {event.detail}")
        else:
            set_password(db, args.username, _read_password(args.password_stdin))
            print(f"new password set for {args.username}")
    except UserError as exc:
        raise UsageError(str(exc)) from None
    finally:
        db.conn.close()
    return 0


def _operator() -> str:
    """The operating-system account running the command, for the audit log."""
    try:
        return "os:" + getpass.getuser()
    except (KeyError, OSError):  # no name in the environment nor the password database (Python 3.11: KeyError)
        return "os:unknown"


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif sys.stdin.isatty():
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            raise UsageError("the two passwords differ")
    else:
        raise UsageError("no terminal to ask for the password; use --password-stdin")
    try:
        check_password_rules(password)
    except UserError as exc:
        raise UsageError(str(exc)) from None
    return password
