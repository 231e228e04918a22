"""Structured logging: one line per event, ``key=value`` pairs, no patient data at INFO.

Log with :func:`log_event` so every line has an event name and fields::

    2026-11-21T10:00:00.123Z INFO scpnode.network.receiver event=instance_stored series=ab12cd34 bytes=525312

Patient names, IDs, birth dates and accession numbers are never logged at INFO
or above. UIDs are logged through :func:`uid_ref`, a short one-way digest that
is stable across lines (so one can follow a series) but not the UID itself.
"""

from __future__ import annotations

import hashlib
import logging
import sys
import time
from pathlib import Path
from typing import Any

_RESERVED = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


def uid_ref(uid: str | None) -> str:
    """A short stable reference to a DICOM UID for logs (first 8 hex of its SHA-256)."""
    if not uid:
        return "-"
    return hashlib.sha256(uid.encode("ascii", "replace")).hexdigest()[:8]


def _format_value(value: Any) -> str:
    text = f"{value:.4g}" if isinstance(value, float) else str(value)
    if not text or any(c in text for c in ' "=\n\t'):
        text = '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


class KeyValueFormatter(logging.Formatter):
    """Formats a record as one line: time, level, logger, message fields."""

    converter = time.gmtime

    def format(self, record: logging.LogRecord) -> str:
        stamp = self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z"
        parts = [stamp, record.levelname, record.name]
        event = getattr(record, "event", None)
        if event:
            parts.append(f"event={event}")
        message = record.getMessage()
        if message and message != event:
            parts.append(f"msg={_format_value(message)}")
        for key, value in record.__dict__.items():
            if key not in _RESERVED and key != "event":
                parts.append(f"{key}={_format_value(value)}")
        if record.exc_info:
            parts.append(f"error={_format_value(self.formatException(record.exc_info))}")
        return " ".join(parts)


def log_event(logger: logging.Logger, event: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log one event with named fields. Never pass patient identifiers at INFO."""
    logger.log(level, event, extra={"event": event, **fields})


def configure_logging(level: str = "INFO", file: Path | None = None) -> None:
    """Send all logs, one line per event, to stderr (and a file if given)."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(file, encoding="utf-8"))
    formatter = KeyValueFormatter()
    for handler in handlers:
        handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = handlers
    root.setLevel(level)
    # pynetdicom logs every PDU and dataset element and highdicom every copied
    # module and source UID at INFO, which would put patient data in the log;
    # APScheduler logs each job run. Keep them at WARNING unless debugging.
    for noisy in ("pynetdicom", "highdicom", "apscheduler"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if level == "DEBUG" else logging.WARNING)
    # dicomweb-client logs study UIDs at INFO and each refused SOP Instance UID
    # at ERROR; the outbox logs the same events with UID digests.
    logging.getLogger("dicomweb_client").setLevel(logging.DEBUG if level == "DEBUG" else logging.CRITICAL)
