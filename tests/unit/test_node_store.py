"""The store's atomic, durable write."""

from __future__ import annotations

import errno
import os
import threading

import pytest

from scpnode.storage import store as store_module
from scpnode.storage.store import InstanceStore, StoreError


@pytest.mark.parametrize("sync", [True, False])
def test_file_appears_whole_under_its_name_and_nothing_else_remains(tmp_path, monkeypatch, sync):
    store = InstanceStore(tmp_path / "store", sync=sync)
    path = store.instance_path("1.2.3", "1.2.3.4", "1.2.3.4.5")
    seen_before_rename = []
    real_replace = os.replace

    def replace(source, target):
        seen_before_rename.append((path.exists(), [p.name for p in path.parent.iterdir()]))
        real_replace(source, target)

    monkeypatch.setattr(store_module.os, "replace", replace)
    store.write(path, b"dicom bytes")
    assert path.read_bytes() == b"dicom bytes"
    assert [p.name for p in path.parent.iterdir()] == [path.name]
    (existed, names), = seen_before_rename
    assert not existed and len(names) == 1 and names[0].endswith(".part")  # written under a temporary name


def test_concurrent_writes_into_one_folder_all_land(tmp_path):
    store = InstanceStore(tmp_path / "store")
    folder = store.series_folder("1.2.3", "1.2.3.4")
    paths = [store.instance_path("1.2.3", "1.2.3.4", f"1.2.3.4.{i}") for i in range(32)]
    threads = [threading.Thread(target=store.write, args=(paths[i], str(i).encode() * 1000))
               for i in range(len(paths))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [p.read_bytes() for p in paths] == [str(i).encode() * 1000 for i in range(len(paths))]
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in paths)


def test_write_where_no_folder_can_be_made_raises_store_error(tmp_path):
    store = InstanceStore(tmp_path / "store")
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "9.9").write_text("not a folder")
    with pytest.raises(StoreError, match="cannot store"):
        store.write(store.instance_path("9.9", "1", "2"), b"x")
    assert [p.name for p in (tmp_path / "store").iterdir()] == ["9.9"]


def test_failed_fsync_raises_store_error_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    store = InstanceStore(tmp_path / "store")
    path = store.instance_path("1.2.3", "1.2.3.4", "1.2.3.4.5")
    path.parent.mkdir(parents=True)

    def failing_fsync(fd):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(store_module.os, "fsync", failing_fsync)
    with pytest.raises(StoreError, match="Input/output error"):
        store.write(path, b"dicom bytes")
    assert not path.exists() and not list(tmp_path.rglob("*.part"))
