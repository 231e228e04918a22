"""Helpers shared by the subcommands."""

from __future__ import annotations

import argparse
import re

from scpnode.config import Settings, load_settings
from scpnode.logs import configure_logging


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Load the configuration named by ``--config`` and set up logging from it."""
    settings = load_settings(args.config)
    configure_logging(args.log_level or settings.logging.level, settings.logging.file)
    return settings


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def terminal_safe(text: str) -> str:
    """``text`` with control characters shown as ``\\xNN`` rather than sent to the terminal.

    Values that came from outside (patient fields and descriptions sent by a
    modality) can carry ANSI escape sequences that recolour, hide or rewrite
    what an operator sees, or set the terminal's title.
    """
    return _CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", text)
