"""``scpnode users``: manage the web UI's users (add, list, disable, enable, password)."""

from __future__ import annotations

import argparse
import getpass
import sys

from scpnode.db import open_database
from scpnode.errors import UsageError
from scpnode.users import (
    Role, UserError, add_user, check_password_rules, ensure_schema, list_users, set_disabled, set_password,
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
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    db = open_database(args.settings.node.database)
    ensure_schema(db)
    try:
        if args.action == "add":
            user = add_user(db, args.username, _read_password(args.password_stdin), args.role)
            print(f"added {user.role.value} {user.username}")
        elif args.action == "list":
            print(f"{'user':<24} {'role':<12} {'state':<9} {'created (UTC)':<26} last login (UTC)")
            for user in list_users(db):
                state = "disabled" if user.disabled else "active"
                print(f"{user.username:<24} {user.role.value:<12} {state:<9} {user.created_at:<26} "
                      f"{user.last_login_at or 'never'}")
        elif args.action in ("disable", "enable"):
            set_disabled(db, args.username, args.action == "disable")
            print(f"{args.action}d {args.username}")
        else:
            set_password(db, args.username, _read_password(args.password_stdin))
            print(f"new password set for {args.username}")
    except UserError as exc:
        raise UsageError(str(exc)) from None
    finally:
        db.conn.close()
    return 0


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
