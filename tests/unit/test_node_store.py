"""The store's two-step write (stage, then commit or discard) used by the receiver."""

from __future__ import annotations

import errno
import threading

import pytest

from scpnode import store as store_module
from scpnode.store import InstanceStore, StoreError


@pytest.mark.parametrize("sync", [True, False])
def test_staged_file_gets_its_name_only_at_commit(tmp_path, sync):
    store = InstanceStore(tmp_path / "store", sync=sync)
    path = store.instance_path("1.2.3", "1.2.3.4", "1.2.3.4.5")
    staged = store.stage(path.parent, b"dicom bytes")
    assert not path.exists()
    assert list(path.parent.glob("*.dcm")) == []
    store.commit(staged, path)
    assert path.read_bytes() == b"dicom bytes"
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_discarded_file_leaves_nothing(tmp_path):
    store = InstanceStore(tmp_path / "store")
    folder = store.series_folder("1.2.3", "1.2.3.4")
    store.discard(store.stage(folder, b"refused"))
    assert list(folder.iterdir()) == []


def test_concurrent_stages_into_one_folder_all_land(tmp_path):
    store = InstanceStore(tmp_path / "store")
    folder = store.series_folder("1.2.3", "1.2.3.4")
    paths = [store.instance_path("1.2.3", "1.2.3.4", f"1.2.3.4.{i}") for i in range(32)]

    def write(i: int) -> None:
        store.commit(store.stage(folder, str(i).encode() * 1000), paths[i])

    threads = [threading.Thread(target=write, args=(i,)) for i in range(len(paths))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [p.read_bytes() for p in paths] == [str(i).encode() * 1000 for i in range(len(paths))]
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in paths)


def test_stage_where_no_folder_can_be_made_raises_store_error(tmp_path):
    store = InstanceStore(tmp_path / "store")
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "9.9").write_text("not a folder")
    with pytest.raises(StoreError, match="cannot store"):
        store.stage(store.series_folder("9.9", "1"), b"x")
    assert [p.name for p in (tmp_path / "store").iterdir()] == ["9.9"]


def test_published_file_reports_a_failed_folder_fsync(tmp_path, monkeypatch):
    store = InstanceStore(tmp_path / "store")
    path = store.instance_path("1.2.3", "1.2.3.4", "1.2.3.4.5")
    staged = store.stage(path.parent, b"dicom bytes")

    def failing_fsync(folder):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(store_module, "_fsync_folder", failing_fsync)
    published = store.publish(staged, path)
    assert path.read_bytes() == b"dicom bytes"  # visible, complete, but its name may not survive a power loss
    with pytest.raises(StoreError, match="Input/output error"):
        published.wait()
