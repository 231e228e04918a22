"""The DICOM listener: a pynetdicom SCP for C-ECHO and C-STORE (PS3.4 Annex A and B).

Associations: only peers in ``[[peers]]`` (calling AE title and IP address)
are accepted when ``[node] require_known_peers`` is set; others get an
A-ASSOCIATE-RJ "calling AE title not recognised" (PS3.8 9.3.4) and a log line.
Each peer may hold ``max_associations`` associations at once, the node
``[node] max_associations`` in all (more: A-ASSOCIATE-RJ "local limit
exceeded"). With ``[tls] enabled`` the listener speaks DICOM TLS (PS3.15 B.1)
and, by default, requires a client certificate signed by ``ca_file``.

C-STORE handler (one thread per association, as pynetdicom runs them):

1. take the data set bytes exactly as the peer sent them (no re-encoding),
2. check them (:mod:`scpnode.network.instance_checks`): complete encoding,
   SOP Class and Instance UIDs present and equal to the request's,
   study/series UIDs usable, pixel data present for image objects,
3. unless the same content is already stored, write them with a File Meta
   header to ``store/<study>/<series>/<sop>.dcm`` (temp name, fsync, rename,
   fsync of the folder),
4. index the instance in SQLite,

and answers Success only after step 4. Statuses on failure (PS3.4 B.2.3):
``0xA700`` out of resources (disk full or unwritable, database unavailable),
``0xA900`` data set does not match SOP class (missing or wrong UIDs, missing
or empty pixel data, native pixel data shorter or longer than Rows x Columns x
Samples x Bits Allocated x frames declare), ``0xC000`` cannot understand
(undecodable data set, or truncated anywhere: inside a value, inside the header
of its last element). The Error Comment says why.

A data set whose SOP Class UID is empty, while the presentation context says
CT Image Storage, is refused with ``0xA900``: the node stores exactly the bytes
it was sent, and a file without SOP Class UID (Type 1, PS3.3 C.12.1) would be
unusable downstream (derived SEG/SR must reference it).
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import socket
import ssl
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.uid import UID
from pynetdicom import AE, PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION, _config, evt
from pynetdicom.transport import ThreadedAssociationServer

from scpnode.config import PeerSettings, Settings, TlsSettings
from scpnode.db import ThreadDatabases
from scpnode.logs import log_event, uid_ref
from scpnode.network.connection_guard import ConnectionGuard
from scpnode.network.instance_checks import (
    STATUS_OUT_OF_RESOURCES, STATUS_SUCCESS, RejectedInstance, checked_attributes,
)
from scpnode.storage import index
from scpnode.storage.store import InstanceStore, StoreError

LOGGER = logging.getLogger(__name__)

# pynetdicom's "standard" handlers log every PDU and DIMSE message; they cost
# time on every instance and would put patient data in debug logs.
_config.LOG_HANDLER_LEVEL = "none"

STORAGE_SOP_CLASSES: tuple[str, ...] = (
    "1.2.840.10008.5.1.4.1.1.2",        # CT Image Storage
    "1.2.840.10008.5.1.4.1.1.2.1",      # Enhanced CT Image Storage
    "1.2.840.10008.5.1.4.1.1.66.4",     # Segmentation Storage
    "1.2.840.10008.5.1.4.1.1.88.22",    # Enhanced SR Storage
    "1.2.840.10008.5.1.4.1.1.88.33",    # Comprehensive SR Storage
    "1.2.840.10008.5.1.4.1.1.88.34",    # Comprehensive 3D SR Storage
    "1.2.840.10008.5.1.4.1.1.7",        # Secondary Capture Image Storage
    "1.2.840.10008.5.1.4.1.1.7.2",      # Multi-frame Grayscale Byte SC Image Storage
    "1.2.840.10008.5.1.4.1.1.7.3",      # Multi-frame Grayscale Word SC Image Storage
    "1.2.840.10008.5.1.4.1.1.7.4",      # Multi-frame True Color SC Image Storage
    "1.2.840.10008.5.1.4.1.1.104.1",    # Encapsulated PDF Storage
)
"""What the node accepts: CT, and the object types it sends back (round trips)."""

CLOSING_ROOM = 4
"""pynetdicom's association limit allows this many times ``max_pending_connections`` beyond
``max_associations``: pending connections, and those the guard closed whose threads are ending."""

MR_STORAGE_SOP_CLASSES: tuple[str, ...] = (
    "1.2.840.10008.5.1.4.1.1.4",        # MR Image Storage
    "1.2.840.10008.5.1.4.1.1.4.1",      # Enhanced MR Image Storage
)
"""Accepted only with ``[node] accept_mr`` (stored for research extraction, never analysed)."""

TRANSFER_SYNTAXES: tuple[str, ...] = (
    "1.2.840.10008.1.2.4.90",   # JPEG 2000 Lossless
    "1.2.840.10008.1.2.4.80",   # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.70",   # JPEG Lossless SV1
    "1.2.840.10008.1.2.4.57",   # JPEG Lossless
    "1.2.840.10008.1.2.5",      # RLE Lossless
    "1.2.840.10008.1.2.4.201",  # HTJ2K Lossless
    "1.2.840.10008.1.2.1.99",   # Deflated Explicit VR Little Endian
    "1.2.840.10008.1.2.1",      # Explicit VR Little Endian
    "1.2.840.10008.1.2",        # Implicit VR Little Endian
    "1.2.840.10008.1.2.2",      # Explicit VR Big Endian (retired, still sent by old devices)
    "1.2.840.10008.1.2.4.91",   # JPEG 2000
    "1.2.840.10008.1.2.4.81",   # JPEG-LS Near-Lossless
    "1.2.840.10008.1.2.4.50",   # JPEG Baseline
    "1.2.840.10008.1.2.4.51",   # JPEG Extended
    "1.2.840.10008.1.2.4.203",  # HTJ2K
)
"""In order of preference: the acceptor picks the first one the peer proposes
(pynetdicom's negotiation). Lossless compressed syntaxes come first so that
compressed data is stored as sent, uncompressed next, lossy last so that a
peer able to transcode never degrades HU values when it could send them
losslessly; lossy data is still accepted when it is all a peer has."""


@dataclass(frozen=True)
class StoredInstance:
    """What the handler did with one received instance."""

    meta: index.InstanceMeta
    outcome: index.RecordOutcome
    size: int


def make_application_entity(ae_title: str, max_associations: int, *, accept_mr: bool = False) -> AE:
    """An AE that accepts Verification and every storage SOP class of the node in every transfer syntax
    (MR too with ``accept_mr``; otherwise an MR presentation context is rejected at negotiation)."""
    ae = AE(ae_title=ae_title)
    ae.maximum_associations = max_associations
    ae.maximum_pdu_size = 0  # no limit: the peer chooses, fewer PDUs per instance
    ae.add_supported_context("1.2.840.10008.1.1")
    for sop_class in STORAGE_SOP_CLASSES + (MR_STORAGE_SOP_CLASSES if accept_mr else ()):
        ae.add_supported_context(sop_class, list(TRANSFER_SYNTAXES))
    return ae


def server_ssl_context(tls: TlsSettings) -> ssl.SSLContext:
    """The TLS context of the listener: our certificate, and the peers' CA when client certificates are required."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(tls.ca_file) if tls.ca_file else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    context.verify_mode = ssl.CERT_REQUIRED if tls.require_client_cert else ssl.CERT_NONE
    return context


def client_ssl_context(tls: TlsSettings) -> ssl.SSLContext:
    """The TLS context used to send to a destination: verify it against ``ca_file``, present our certificate."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(tls.ca_file) if tls.ca_file else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = False  # DICOM peers are configured by address; the CA pins who they are
    if tls.cert_file and tls.key_file:
        context.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    return context


class PeerPolicy:
    """Who may open associations, and how many at once (thread-safe)."""

    def __init__(self, peers: list[PeerSettings], require_known_peers: bool, max_total: int | None = None) -> None:
        self.require_known_peers = require_known_peers
        self.max_total = max_total
        self._peers = [(peer, _resolve(peer.host)) for peer in peers]
        self._active: Counter[str] = Counter()
        self._lock = threading.Lock()

    def allowed_addresses(self) -> set[str] | None:
        """Addresses that may connect at all (None: any, without require_known_peers or with a "*" peer)."""
        hosts = {host for _, host in self._peers}
        return None if not self.require_known_peers or "*" in hosts else hosts

    def admit(self, ae_title: str, address: str) -> tuple[str | None, str | None]:
        """Count a new association in; returns (peer key, None) or (None, reason to reject)."""
        peer = next((p for p, host in self._peers if p.ae_title == ae_title and host in ("*", address)), None)
        if peer is None and self.require_known_peers:
            return None, "unknown peer"
        key, limit = (peer.ae_title, peer.max_associations) if peer else (ae_title, None)
        with self._lock:
            if limit is not None and self._active[key] >= limit:
                return None, "peer association limit"
            if self.max_total is not None and sum(self._active.values()) >= self.max_total:
                return None, "node association limit"
            self._active[key] += 1
        return key, None

    def release(self, key: str) -> None:
        with self._lock:
            self._active[key] -= 1
            if self._active[key] <= 0:
                del self._active[key]


def _resolve(host: str) -> str:
    if host == "*":
        return host
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return socket.gethostbyname(host)


class Receiver:
    """The listening SCP: accepts associations and stores and indexes instances.

    Args:
        settings: the node configuration ([node], [tls], [[peers]]).
        store: where files go.
        databases: per-thread connections to the node database.
    """

    def __init__(self, settings: Settings, store: InstanceStore, databases: ThreadDatabases) -> None:
        self.settings = settings
        self.store = store
        self.databases = databases
        node = settings.node
        self.policy = PeerPolicy(settings.peers, node.require_known_peers, node.max_associations)
        self.guard = ConnectionGuard(
            allowed_addresses=self.policy.allowed_addresses(),
            max_pending=node.max_pending_connections, max_pending_per_address=node.max_pending_per_address,
            negotiation_timeout=node.negotiation_timeout_seconds, read_timeout=node.read_timeout_seconds)
        self._server: ThreadedAssociationServer | None = None
        self._admitted: dict[int, str] = {}

    @property
    def port(self) -> int:
        """The port the listener is bound to (useful with ``port = 0``)."""
        if self._server is None:
            raise RuntimeError("receiver not started")
        return self._server.server_address[1]

    def start(self) -> None:
        """Start listening in background threads."""
        node = self.settings.node
        # pynetdicom counts connections not yet negotiated as associations, and keeps counting one
        # the guard has closed until its thread has ended (a moment, longer on a busy machine):
        # room for both on top of max_associations, which the PeerPolicy enforces on negotiated ones.
        # Live pending connections stay capped by the guard; this is only pynetdicom's backstop.
        backstop = node.max_associations + CLOSING_ROOM * node.max_pending_connections
        ae = make_application_entity(node.ae_title, backstop, accept_mr=node.accept_mr)
        ae.acse_timeout = node.negotiation_timeout_seconds
        ssl_context = server_ssl_context(self.settings.tls) if self.settings.tls.enabled else None
        handlers = [
            (evt.EVT_REQUESTED, self._on_requested),
            (evt.EVT_CONN_CLOSE, self._on_closed),
            (evt.EVT_C_ECHO, lambda event: STATUS_SUCCESS),
            (evt.EVT_C_STORE, self._on_store),
        ]
        self.guard.start()
        self._server = ae.make_server((node.host, node.port), ssl_context=ssl_context, evt_handlers=handlers,
                                      server_class=self.guard.server_class())
        threading.Thread(target=self._server.serve_forever, name="dicom-acceptor", daemon=True).start()
        log_event(LOGGER, "receiver_started", ae_title=node.ae_title, port=self.port,
                  tls=self.settings.tls.enabled, peers=len(self.settings.peers))

    def stop(self, grace_seconds: float = 30.0) -> None:
        """Stop accepting associations, let open ones finish (up to ``grace_seconds``), then abort the rest."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()  # closes the listening socket; running associations go on
        deadline = time.monotonic() + grace_seconds
        # Connections that never negotiated (port probes, stalled peers) are not waited for.
        while any(a.is_established for a in server.active_associations) and time.monotonic() < deadline:
            time.sleep(0.05)
        for assoc in server.active_associations:
            assoc.abort()
        self.guard.stop()
        log_event(LOGGER, "receiver_stopped")

    # -- association events ---------------------------------------------------
    def _on_requested(self, event: evt.Event) -> None:
        assoc = event.assoc
        self.guard.negotiated((str(assoc.requestor.address), int(assoc.requestor.port)))
        ae_title = str(assoc.requestor.primitive.calling_ae_title).strip()
        address = assoc.requestor.address
        called = str(assoc.requestor.primitive.called_ae_title).strip()
        if self.settings.node.require_called_aet and called != self.settings.node.ae_title:
            log_event(LOGGER, "association_rejected", logging.WARNING, calling_ae=ae_title, address=address,
                      reason=f"called AE title {called!r} is not this node's {self.settings.node.ae_title!r}")
            assoc.acse.send_reject(0x01, 0x01, 0x07)  # permanent, service user, called AE not recognised
            assoc.is_rejected = True
            assoc.kill()
            return
        key, refusal = self.policy.admit(ae_title, address)
        if key is None:
            log_event(LOGGER, "association_rejected", logging.WARNING,
                      calling_ae=ae_title, address=address, reason=refusal)
            if refusal == "unknown peer":
                assoc.acse.send_reject(0x01, 0x01, 0x03)  # permanent, service user, calling AE not recognised
            else:
                assoc.acse.send_reject(0x02, 0x03, 0x02)  # transient, provider, local limit exceeded
            assoc.is_rejected = True
            assoc.kill()
            return
        self._admitted[id(assoc)] = key

    def _on_closed(self, event: evt.Event) -> None:
        requestor = event.assoc.requestor
        self.guard.closed((str(requestor.address), int(requestor.port)))
        key = self._admitted.pop(id(event.assoc), None)
        if key is not None:
            self.policy.release(key)

    def _on_store(self, event: evt.Event) -> int | Dataset:
        calling_ae = event.assoc.requestor.ae_title
        try:
            stored = self.receive(event)
        except RejectedInstance as exc:
            log_event(LOGGER, "instance_refused", logging.WARNING, calling_ae=calling_ae,
                      status=f"0x{exc.status:04X}", reason=str(exc))
            return _status(exc.status, str(exc))
        except StoreError as exc:
            log_event(LOGGER, "instance_not_stored", logging.ERROR, calling_ae=calling_ae, reason=str(exc))
            return _status(STATUS_OUT_OF_RESOURCES, str(exc))
        except Exception as exc:  # noqa: BLE001 - a peer must get a failure status, never a dropped association
            LOGGER.exception("store handler failed", extra={"event": "store_failed"})
            return _status(STATUS_OUT_OF_RESOURCES, f"internal error: {type(exc).__name__}")
        log_event(LOGGER, "instance_stored", logging.DEBUG, series=uid_ref(stored.meta.series_instance_uid),
                  outcome=stored.outcome.value, bytes=stored.size)
        return STATUS_SUCCESS

    def receive(self, event: evt.Event) -> StoredInstance:
        """Check, store and index the instance of a C-STORE request.

        Raises:
            RejectedInstance: the data set is refused (status and reason attached).
            StoreError: the file could not be written.
        """
        request = event.request
        calling_ae = event.assoc.requestor.ae_title
        transfer_syntax = UID(event.context.transfer_syntax)
        encoded = event.encoded_dataset(include_meta=False)
        meta, study = checked_attributes(encoded, transfer_syntax, str(request.AffectedSOPClassUID),
                                         str(request.AffectedSOPInstanceUID),
                                         max_inflated_bytes=self.settings.node.max_inflated_mb * 2**20)
        sha256 = hashlib.sha256(encoded).hexdigest()
        existing = index.find_instance(self.databases.get(), meta.sop_instance_uid)
        if existing is not None and index.is_stored_duplicate(existing, sha256):
            return StoredInstance(meta, index.RecordOutcome.DUPLICATE, int(existing["size"]))
        folder = self.store.series_folder(meta.study_instance_uid, meta.series_instance_uid)
        path = self.store.instance_path(meta.study_instance_uid, meta.series_instance_uid, meta.sop_instance_uid)
        header = file_meta_header(meta.sop_class_uid, meta.sop_instance_uid, transfer_syntax, calling_ae)
        data = b"".join((header, encoded))
        self.store.write(path, data)
        size = len(data)
        try:
            outcome = index.record_instance(
                self.databases.get(), meta, study, path=path, folder=folder, size=size,
                sha256=sha256, transfer_syntax_uid=str(transfer_syntax), calling_ae_title=calling_ae)
        except Exception as exc:
            raise StoreError(f"cannot index ({exc}): {meta.sop_instance_uid}") from exc
        if existing is not None and existing["path"] != str(path):  # moved to another series: drop the old copy
            Path(existing["path"]).unlink(missing_ok=True)
        return StoredInstance(meta, outcome, size)


def _status(code: int, comment: str) -> Dataset:
    status = Dataset()
    status.Status = code
    status.ErrorComment = comment[:64]  # LO, 64 characters at most
    return status


def file_meta_header(sop_class_uid: str, sop_instance_uid: str, transfer_syntax: str, source_ae_title: str) -> bytes:
    """Preamble, prefix and File Meta Information (PS3.10 7.1) for a received data set.

    Encoded here rather than with pydicom's writer (as ``Event.encoded_dataset``
    does) because that costs close to a millisecond per instance, the largest
    per-instance cost of the handler after decoding; group 0002 is always
    Explicit VR Little Endian and has only these few elements.
    """
    elements = b"".join((
        _meta_element(0x0001, b"OB", b"\x00\x01"),
        _meta_element(0x0002, b"UI", sop_class_uid.encode("ascii")),
        _meta_element(0x0003, b"UI", sop_instance_uid.encode("ascii")),
        _meta_element(0x0010, b"UI", str(transfer_syntax).encode("ascii")),
        _meta_element(0x0012, b"UI", PYNETDICOM_IMPLEMENTATION_UID.encode("ascii")),
        _meta_element(0x0013, b"SH", PYNETDICOM_IMPLEMENTATION_VERSION.encode("ascii")),
        _meta_element(0x0016, b"AE", source_ae_title.encode("ascii", "replace")),
    ))
    group_length = _meta_element(0x0000, b"UL", struct.pack("<I", len(elements)))
    return b"".join((b"\x00" * 128, b"DICM", group_length, elements))


def _meta_element(element: int, vr: bytes, value: bytes) -> bytes:
    if len(value) % 2:
        value += b"\x00" if vr == b"UI" else b" "
    if vr == b"OB":  # 2 reserved bytes and a 4-byte length (PS3.5 7.1.2)
        return struct.pack("<HH", 0x0002, element) + vr + b"\x00\x00" + struct.pack("<I", len(value)) + value
    return struct.pack("<HH", 0x0002, element) + vr + struct.pack("<H", len(value)) + value
