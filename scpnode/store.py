"""The instance store: received DICOM files on disk, laid out by UID.

Layout (readable by a person and by any DICOM tool)::

    storage_dir/<Study Instance UID>/<Series Instance UID>/<SOP Instance UID>.dcm

Every file is written under a temporary name in its final folder, flushed to
disk (fsync), then renamed over its final name, and the folder is fsynced: a
reader never sees a half-written file, and once :meth:`InstanceStore.write`
returns the file survives a crash of the node, and of the machine too with
``[node] sync_writes`` (the default). Only UIDs made of digits and dots
(PS3.5 9.1) become path components, so a peer cannot write outside the store.

The receiver writes in steps, :meth:`InstanceStore.stage`, then
:meth:`InstanceStore.publish` and :meth:`PublishedFile.wait`, so that the
two fsyncs of a durable write (the file's, then its folder's after the
rename: each a journal commit, the slowest part of storing an instance) run
in a background thread while the receiver hashes the data and indexes it.
The file becomes visible under its final name only after its own fsync.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

UID_PATTERN = re.compile(r"[0-9]+(\.[0-9]+)*")
UID_MAX_LENGTH = 64
_SYNC_THREADS = 16


class StoreError(OSError):
    """An instance could not be written durably (disk full, permissions, I/O)."""


@dataclass(frozen=True)
class StagedFile:
    """Bytes written under a temporary name in their final folder, being flushed to disk.

    Made by :meth:`InstanceStore.stage`; hand it to :meth:`InstanceStore.commit` or
    :meth:`InstanceStore.discard`, exactly once.
    """

    temp: Path
    size: int
    synced: Future | None
    """The background fsync, or None when the store does not sync."""


@dataclass(frozen=True)
class PublishedFile:
    """A file under its final name whose folder entry is being flushed to disk (see :meth:`InstanceStore.publish`)."""

    path: Path
    folder_synced: Future | None
    """The background fsync of the folder, or None when the store does not sync."""

    def wait(self) -> None:
        """Return once the file's name is durable.

        Raises:
            StoreError: the folder could not be flushed; the file may not survive a power loss.
        """
        if self.folder_synced is None:
            return
        try:
            self.folder_synced.result()
        except OSError as exc:
            raise StoreError(f"cannot store ({exc.strerror or exc}): {self.path.name}") from exc


def is_valid_uid(uid: str | None) -> bool:
    """True for a UID that is safe as a file name: digits and dots, at most 64 characters (PS3.5 9.1).

    Leading zeros in a component, which PS3.5 forbids but some devices write,
    are tolerated: they are harmless in a path.
    """
    return bool(uid) and len(uid) <= UID_MAX_LENGTH and UID_PATTERN.fullmatch(uid) is not None


class InstanceStore:
    """Writes and locates instance files under ``root``.

    Args:
        root: the store folder.
        sync: fsync each file and its folder before :meth:`write` returns (power-loss safe).
            Without it a written file still survives a crash of the process, as it is in the
            kernel's page cache, but not a crash of the machine.
    """

    def __init__(self, root: str | Path, sync: bool = True) -> None:
        self.root = Path(root)
        self.sync = sync
        self._sync_pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def series_folder(self, study_uid: str, series_uid: str) -> Path:
        """The folder holding one series' files."""
        for uid in (study_uid, series_uid):
            if not is_valid_uid(uid):
                raise ValueError(f"not a valid UID for a path: {uid!r}")
        return self.root / study_uid / series_uid

    def instance_path(self, study_uid: str, series_uid: str, sop_uid: str) -> Path:
        """Where one instance's file lives."""
        if not is_valid_uid(sop_uid):
            raise ValueError(f"not a valid UID for a path: {sop_uid!r}")
        return self.series_folder(study_uid, series_uid) / f"{sop_uid}.dcm"

    def write(self, path: Path, data: bytes) -> None:
        """Write ``data`` to ``path`` atomically and durably (temp name, fsync, rename, fsync folder).

        Raises:
            StoreError: the bytes are not safely on disk; nothing is left at ``path``
                that was not there before.
        """
        self.commit(self._write_temp(path.parent, data, self._fsync_now), path)

    def stage(self, folder: Path, data: bytes) -> StagedFile:
        """Write ``data`` under a temporary name in ``folder`` and start its fsync in a background thread.

        The bytes are in the page cache when this returns (a write error, e.g. a
        full disk, raises here); :meth:`commit` waits for the fsync.

        Raises:
            StoreError: the bytes could not be written; nothing is left behind.
        """
        return self._write_temp(folder, data, self._fsync_in_background)

    def commit(self, staged: StagedFile, path: Path) -> None:
        """Wait until ``staged`` is on disk, rename it to ``path`` (same folder), fsync the folder.

        Raises:
            StoreError: the bytes are not safely on disk; the temporary file is removed
                and nothing is left at ``path`` that was not there before.
        """
        self.publish(staged, path).wait()

    def publish(self, staged: StagedFile, path: Path) -> "PublishedFile":
        """Wait until ``staged`` is on disk and rename it to ``path`` (same folder).

        The folder fsync that makes the new name durable starts in a background
        thread, so that the caller can index the file meanwhile;
        :meth:`PublishedFile.wait` for it before saying the file is stored.

        Raises:
            StoreError: the bytes are not safely on disk; the temporary file is removed.
        """
        try:
            if staged.synced is not None:
                staged.synced.result()
            os.replace(staged.temp, path)
        except OSError as exc:
            with contextlib.suppress(OSError):  # the folder itself may be what failed
                staged.temp.unlink(missing_ok=True)
            raise StoreError(f"cannot store ({exc.strerror or exc}): {path.name}") from exc
        return PublishedFile(path, self._in_background(_fsync_folder, path.parent) if self.sync else None)

    def discard(self, staged: StagedFile) -> None:
        """Remove a staged file that is not to be stored (refused or duplicate instance)."""
        if staged.synced is not None:
            staged.synced.exception()  # wait: the fsync must not run on a file being removed
        staged.temp.unlink(missing_ok=True)

    def _write_temp(self, folder: Path, data: bytes, start_sync: Callable[[int], Future | None]) -> StagedFile:
        temp = folder / f".{secrets.token_hex(8)}.part"
        try:
            self._make_folder(folder)
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        except OSError as exc:
            raise StoreError(f"cannot store ({exc.strerror or exc}): {folder.name}") from exc
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
        except OSError as exc:
            os.close(fd)
            temp.unlink(missing_ok=True)
            raise StoreError(f"cannot store ({exc.strerror or exc}): {folder.name}") from exc
        return StagedFile(temp, len(data), start_sync(fd))

    def _fsync_now(self, fd: int) -> Future | None:
        try:
            if self.sync:
                os.fsync(fd)
        except OSError as exc:
            failed: Future = Future()
            failed.set_exception(exc)
            return failed
        finally:
            os.close(fd)
        return None

    def _fsync_in_background(self, fd: int) -> Future | None:
        if not self.sync:
            os.close(fd)
            return None
        return self._in_background(_fsync_and_close, fd)

    def _in_background(self, function: Callable[..., None], *args: object) -> Future:
        with self._pool_lock:
            if self._sync_pool is None:
                self._sync_pool = ThreadPoolExecutor(_SYNC_THREADS, thread_name_prefix="store-fsync")
            return self._sync_pool.submit(function, *args)

    def _make_folder(self, folder: Path) -> None:
        # A new folder's entry is durable only once its parent is fsynced:
        # create missing levels one by one and sync each parent that gained one.
        if folder.is_dir():
            return
        missing = [folder]
        while not missing[-1].parent.is_dir():
            missing.append(missing[-1].parent)
        for created in reversed(missing):
            try:
                created.mkdir()
            except FileExistsError:
                continue
            if self.sync:
                _fsync_folder(created.parent)

    def close(self) -> None:
        """Wait for background fsyncs and end their threads (a later :meth:`stage` starts new ones)."""
        with self._pool_lock:
            pool, self._sync_pool = self._sync_pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    def remove_partial_files(self) -> int:
        """Delete temporary files left by a crash in the middle of a write; return how many."""
        removed = 0
        if self.root.is_dir():
            for temp in self.root.glob("*/*/.*.part"):
                temp.unlink(missing_ok=True)
                removed += 1
        return removed


def _fsync_and_close(fd: int) -> None:
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_folder(folder: Path) -> None:
    # The rename is durable only once the folder entry is on disk (POSIX).
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
