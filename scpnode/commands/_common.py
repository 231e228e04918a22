"""Helpers shared by the subcommands."""

from __future__ import annotations

import argparse

from scpnode.config import Settings, load_settings
from scpnode.logs import configure_logging


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Load the configuration named by ``--config`` and set up logging from it."""
    settings = load_settings(args.config)
    configure_logging(args.log_level or settings.logging.level, settings.logging.file)
    return settings
