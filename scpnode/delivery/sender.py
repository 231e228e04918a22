"""The outbox sender: a thread that delivers pending outbox items by C-STORE (PS3.4 Annex B) or STOW-RS.

Every ``poll_seconds`` it takes the due items, groups them by destination and
sends each group over one association (``protocol = "dimse"``), or POSTs them
one by one to a DICOMweb server (``protocol = "stow-rs"``, see
:mod:`scpnode.delivery.stow`). Failures are sorted in two kinds:

- the destination cannot be reached (refused connection, rejected or aborted
  association, no response): the item stays ``pending`` and is retried with
  exponential backoff (``retry_base_seconds`` doubling up to
  ``retry_max_seconds``) for as long as it takes; nothing is dropped while a
  PACS is down;
- the destination answers with a failure status or accepts no presentation
  context for the object: after ``max_refusals`` such answers the item is
  ``failed`` with the destination's answer, visible until someone retries it.

A Warning status (0xB000 family) counts as delivered (PS3.4 B.2.3).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE

from scpnode.config import DestinationSettings, TlsSettings
from scpnode.db import ThreadDatabases
from scpnode.delivery import outbox
from scpnode.delivery.outbox import OutboxItem
from scpnode.delivery.stow import Outcome, StowSender
from scpnode.logs import log_event
from scpnode.network.receiver import client_ssl_context

LOGGER = logging.getLogger(__name__)

MAX_CONTEXTS = 128
"""Presentation contexts one association may propose (PS3.8 9.3.2.2: context ids 1-255, odd)."""


class OutboxSender:
    """Delivers the outbox to ``[[destinations]]`` in a background thread.

    Raises:
        ConfigError: a STOW-RS destination's credentials file cannot be read.
    """

    def __init__(self, databases: ThreadDatabases, destinations: list[DestinationSettings], ae_title: str,
                 tls: TlsSettings, *, poll_seconds: float = 1.0, retry_base_seconds: float = 5.0,
                 retry_max_seconds: float = 600.0, max_refusals: int = 3, batch_size: int = 100,
                 timeout_seconds: float = 30.0) -> None:
        self.databases = databases
        self.destinations = {d.name: d for d in destinations}
        self.ae_title = ae_title
        self.tls = tls
        self.poll_seconds = poll_seconds
        self.retry_base_seconds = retry_base_seconds
        self.retry_max_seconds = retry_max_seconds
        self.max_refusals = max_refusals
        self.batch_size = batch_size
        self.timeout_seconds = timeout_seconds
        self._stow = {d.name: StowSender(d, tls, timeout_seconds) for d in destinations if d.protocol == "stow-rs"}
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="outbox-sender", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the association in progress (if any)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def wake(self) -> None:
        """Look at the outbox now instead of at the next poll (e.g. after enqueueing)."""
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.send_due()
            except Exception:  # noqa: BLE001 - keep the sender alive; the items stay pending
                LOGGER.exception("outbox pass failed", extra={"event": "outbox_error"})
            self._wake.wait(self.poll_seconds)
            self._wake.clear()

    def send_due(self, now: float | None = None) -> int:
        """Send every due item once; return how many were delivered."""
        db = self.databases.get()
        by_destination: dict[str, list[OutboxItem]] = defaultdict(list)
        for item in outbox.due_items(db, now, limit=self.batch_size):
            by_destination[item.destination].append(item)
        delivered = 0
        for name, batch in by_destination.items():
            if self._stop.is_set():
                break
            destination = self.destinations.get(name)
            if destination is None:
                for item in batch:
                    self._failed(item, f"no destination named {name!r} in the configuration", refused=True)
                continue
            delivered += self._send_batch(destination, batch)
        return delivered

    def _send_batch(self, destination: DestinationSettings, batch: list[OutboxItem]) -> int:
        datasets = {}
        for item in batch:
            try:
                datasets[item.id] = pydicom.dcmread(item.path)
            except (OSError, pydicom.errors.InvalidDicomError) as exc:
                self._failed(item, f"cannot read {item.path.name}: {exc}", refused=True, final=True)
        batch = [item for item in batch if item.id in datasets]
        if not batch:
            return 0
        if destination.protocol == "stow-rs":
            delivered = self._send_stow(self._stow[destination.name], batch, datasets)
        else:
            delivered = self._send_dimse(destination, batch, datasets)
        log_event(LOGGER, "outbox_sent", destination=destination.name, sent=delivered, tried=len(batch))
        return delivered

    def _send_dimse(self, destination: DestinationSettings, batch: list[OutboxItem],
                    datasets: dict[int, Dataset]) -> int:
        contexts: dict[str, set[str]] = {}
        for item in batch:
            syntax = str(datasets[item.id].file_meta.TransferSyntaxUID)
            contexts.setdefault(item.sop_class_uid, {syntax, ExplicitVRLittleEndian, ImplicitVRLittleEndian}).add(syntax)
        ae = AE(ae_title=self.ae_title)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = self.timeout_seconds
        for sop_class, syntaxes in list(contexts.items())[:MAX_CONTEXTS]:
            ae.add_requested_context(sop_class, sorted(syntaxes))
        tls_args = (client_ssl_context(self.tls), None) if destination.tls else None
        assoc = ae.associate(destination.host, destination.port, ae_title=destination.ae_title, tls_args=tls_args)
        if not assoc.is_established:
            reason = "association rejected" if assoc.is_rejected else "destination not reachable"
            self._unavailable(destination, batch, f"{reason} ({destination.ae_title}@{destination.host}:"
                                                  f"{destination.port})")
            return 0
        delivered = 0
        try:
            for item in batch:
                if not assoc.is_established:
                    self._failed(item, "association lost during sending")
                    continue
                try:
                    status = assoc.send_c_store(datasets[item.id])
                except ValueError as exc:  # no accepted presentation context for this object
                    self._failed(item, f"not accepted by destination: {exc}", refused=True)
                    continue
                code = int(status.get("Status", -1)) if status else None
                if code is None:
                    self._failed(item, "no response from destination")
                elif code == 0x0000 or 0xB000 <= code <= 0xBFFF:
                    outbox.mark_sent(self.databases.get(), item.id)
                    delivered += 1
                else:
                    comment = status.get("ErrorComment", "")
                    self._failed(item, f"destination answered status 0x{code:04X} {comment}".strip(),
                                 refused=not 0xA700 <= code <= 0xA7FF)
        finally:
            if assoc.is_established:
                assoc.release()
        return delivered

    def _send_stow(self, stow: StowSender, batch: list[OutboxItem], datasets: dict[int, Dataset]) -> int:
        delivered = 0
        for position, item in enumerate(batch):
            if self._stop.is_set():
                break
            delivery = stow.store(datasets[item.id])
            if delivery.outcome == Outcome.STORED:
                outbox.mark_sent(self.databases.get(), item.id)
                delivered += 1
            elif delivery.outcome == Outcome.REFUSED:
                self._failed(item, delivery.detail, refused=True)
            else:  # the server is down or busy: the rest of the batch waits too
                self._unavailable(stow.destination, batch[position:], delivery.detail)
                break
        return delivered

    def _unavailable(self, destination: DestinationSettings, items: list[OutboxItem], reason: str) -> None:
        for item in items:
            self._failed(item, reason)
        log_event(LOGGER, "destination_unavailable", logging.WARNING, destination=destination.name,
                  reason=reason, pending=len(items))

    def _failed(self, item: OutboxItem, error: str, refused: bool = False, final: bool = False) -> None:
        attempts = item.attempts + 1
        delay = min(self.retry_max_seconds, self.retry_base_seconds * 2 ** (attempts - 1))
        give_up = final or (refused and item.refusals + 1 >= self.max_refusals)
        outbox.mark_attempt_failed(self.databases.get(), item.id, error, time.time() + delay, refused, give_up)
        if give_up:
            log_event(LOGGER, "outbox_item_failed", logging.ERROR, item=item.id, destination=item.destination,
                      error=error)
