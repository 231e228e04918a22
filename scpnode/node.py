"""The running node: receiver, completion scheduler and outbox sender, started and stopped together.

Other parts of the product (the job pipeline, the web UI) attach as
*services*: any object with ``start()`` and ``stop()``. They are started after
the node's own parts (scheduler, sender, receiver), in the order given, and
stopped before them, in reverse order, so a service can rely on the database
and the receiver being up. Stopping ends with the receiver (no new
associations, open ones finish), then the sender and the scheduler::

    node = Node(settings, on_series_selected=pipeline.enqueue, services=[pipeline, web_ui])
    node.start()
    ...
    node.stop()

``on_series_selected`` is called from the scheduler thread with a
:class:`~scpnode.storage.index.SeriesRef` each time a series is selected, and again at
start for selected series that were never acknowledged
(:func:`scpnode.storage.index.acknowledge_selected`), which happens before the
services are started. It must return quickly (enqueue, do not process).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Protocol

import sqlite_utils

from scpnode.config import Settings
from scpnode.db import ThreadDatabases
from scpnode.delivery.sender import OutboxSender
from scpnode.logs import log_event
from scpnode.network.receiver import Receiver
from scpnode.pipeline.completion import CompletionScheduler
from scpnode.schema import open_node_database
from scpnode.storage.index import SeriesRef
from scpnode.storage.store import InstanceStore

LOGGER = logging.getLogger(__name__)


class Service(Protocol):
    """Something started and stopped with the node."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


class Node:
    """The DICOM node built from its settings.

    Args:
        settings: the whole configuration.
        on_series_selected: hook for selected series (see module docstring), or None.
        services: more services started after, and stopped before, the node's own.
        sender_options: keyword arguments for :class:`~scpnode.delivery.sender.OutboxSender`
            (poll and retry timing).
    """

    def __init__(self, settings: Settings, on_series_selected: Callable[[SeriesRef], None] | None = None,
                 services: Sequence[Service] = (), sender_options: dict | None = None) -> None:
        self.settings = settings
        self.databases = ThreadDatabases(settings.node.database)
        self.store = InstanceStore(settings.node.storage_dir, sync=settings.node.sync_writes)
        self.receiver = Receiver(settings, self.store, self.databases)
        self.scheduler = CompletionScheduler(self.databases, settings.completion, settings.selection,
                                             on_series_selected, settings.study_choice)
        self.sender = OutboxSender(self.databases, settings.destinations, settings.node.ae_title, settings.tls,
                                   **(sender_options or {}))
        self.services = list(services)
        self._started: list[Service] = []

    @property
    def port(self) -> int:
        """The port the receiver listens on (the configured one, or the one chosen for port 0)."""
        return self.receiver.port

    def database(self) -> sqlite_utils.Database:
        """The calling thread's connection to the node database."""
        return self.databases.get()

    def start(self) -> None:
        """Create/migrate the tables, then start receiver, scheduler, sender and the attached services."""
        self.settings.node.storage_dir.mkdir(parents=True, exist_ok=True)
        open_node_database(self.settings.node.database).conn.close()
        removed = self.store.remove_partial_files()
        if removed:
            log_event(LOGGER, "partial_files_removed", count=removed)
        try:
            for service in (self.scheduler, self.sender, self.receiver, *self.services):
                service.start()
                self._started.append(service)
        except BaseException:
            self.stop()
            raise
        log_event(LOGGER, "node_started", ae_title=self.settings.node.ae_title, port=self.port)

    def stop(self) -> None:
        """Stop in reverse order: services, receiver (open associations finish), sender, scheduler."""
        while self._started:
            service = self._started.pop()
            try:
                service.stop()
            except Exception:  # noqa: BLE001 - stop the others anyway
                LOGGER.exception("service stop failed", extra={"event": "stop_failed"})
        log_event(LOGGER, "node_stopped")

    def __enter__(self) -> "Node":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
