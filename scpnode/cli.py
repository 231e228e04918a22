"""The ``scpnode`` command line.

Each subcommand lives in its own module under :mod:`scpnode.commands` and
exposes ``register(subparsers)``, which adds its parser and sets ``run`` (a
function taking the parsed arguments and returning an exit code). Before a
command runs, the configuration is loaded and validated once and put on
``args.settings``, and logging is set up from it. Errors that
come from user input (config, files, arguments) are printed as one line and
exit with code 2; no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from scpnode import __version__
from scpnode.commands._common import settings_from_args
from scpnode.config import ConfigError
from scpnode.errors import UsageError

COMMAND_MODULES = (
    "serve", "demo", "segment", "segment_validate", "segment_train", "analyze", "cohort", "phantom", "worklist",
    "status", "jobs", "rules", "users", "purge", "backup",
)
"""Subcommands, in the order ``--help`` lists them."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scpnode",
        description=(
            "DICOM node for opportunistic osteoporosis screening: receives CT from the PACS, "
            "segments and measures T11-L2, and returns SEG, SR and a visual report."
        ),
        epilog="Run 'scpnode COMMAND --help' for the options of one command.",
    )
    parser.add_argument("--version", action="version", version=f"scpnode {__version__}")
    parser.add_argument("--config", metavar="FILE", help="node configuration (TOML); default: built-in defaults")
    parser.add_argument("--log-level", choices=("DEBUG", "INFO", "WARNING", "ERROR"),
                        help="override the configured log level")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for name in COMMAND_MODULES:
        importlib.import_module(f"scpnode.commands.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    try:
        args.settings = settings_from_args(args)
        return int(args.run(args) or 0)
    except (ConfigError, UsageError) as exc:
        print(f"scpnode {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"scpnode {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
