"""``scpnode serve``: run the node until SIGTERM or SIGINT.

On the signal the node stops gracefully: no new associations, open ones
finish (up to 30 s), then the sender and the scheduler stop. Everything the
node had acknowledged is in the store and the database, so the next start
resumes completion, selection and the outbox where they were.
"""

from __future__ import annotations

import argparse
import signal
import threading

from scpnode.config import ConfigError
from scpnode.assembly import assemble_node


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("serve", help="run the node: DICOM receiver, scheduler, sender and web UI", description="Run the node: DICOM receiver, scheduler, sender and web UI.")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    node = assemble_node(args.settings)
    try:
        node.start()
    except OSError as exc:  # port in use, unreadable certificate, unwritable storage
        raise ConfigError(f"cannot start the node: {exc}") from None
    try:
        while not stop.wait(1.0):
            pass
    finally:
        node.stop()
    return 0
