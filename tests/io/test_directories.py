"""Generated folders are written whole or not at all, and never over real data."""

from __future__ import annotations

from pathlib import Path

import pytest
from kedro.io.core import DatasetError

from gair.datasets import DirectoryDataset
from gair.io.directories import (
    MANIFEST_NAME,
    NotGeneratedError,
    publish_directory,
    read_manifest,
    replace_directory,
    sha256_file,
    stage_directory,
    staging_path,
)


def _writer(content: str):
    def write(directory):
        (directory / "sub").mkdir()
        (directory / "sub" / "a.txt").write_text(content)
        return {"content": content}

    return write


def test_replace_writes_manifest_and_replaces_generated_folder(tmp_path):
    target = tmp_path / "out"
    replace_directory(target, _writer("one"))
    assert (target / "sub" / "a.txt").read_text() == "one"
    manifest = read_manifest(target)
    assert manifest["provenance"] == {"content": "one"}
    assert list(manifest["files"]) == ["sub/a.txt"]
    replace_directory(target, _writer("two"))
    assert (target / "sub" / "a.txt").read_text() == "two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_refuses_to_replace_real_data(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (real / "metadata_common_attributes.csv").write_text("uuid\n")
    with pytest.raises(NotGeneratedError, match=r"real.*did not generate"):
        replace_directory(real, _writer("x"))
    assert (real / "metadata_common_attributes.csv").read_text() == "uuid\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["real"]


def test_failed_write_leaves_the_old_folder_and_no_debris(tmp_path):
    target = tmp_path / "out"
    replace_directory(target, _writer("old"))

    def broken(directory):
        (directory / "half.txt").write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        replace_directory(target, broken)
    assert (target / "sub" / "a.txt").read_text() == "old"
    assert (target / MANIFEST_NAME).is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_directory_dataset_moves_a_staged_folder_into_place(tmp_path):
    dataset = DirectoryDataset(path=str(tmp_path / "data" / "d"))
    assert not dataset.exists()
    with pytest.raises(DatasetError, match="does not exist"):
        dataset.load()
    with pytest.raises(DatasetError, match="stage_directory"):
        dataset.save({"not": "a folder"})

    staged = stage_directory(tmp_path / "staging", "d", _writer("one"))
    dataset.check_replaceable()
    dataset.save(staged)
    assert dataset.exists() and dataset.load() == tmp_path / "data" / "d"
    assert (tmp_path / "data" / "d" / "sub" / "a.txt").read_text() == "one"
    assert read_manifest(tmp_path / "data" / "d")["provenance"] == {"content": "one"}
    assert not staged.exists() and list((tmp_path / "staging").iterdir()) == []
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["d"]


def test_staged_folder_holds_the_manifest_and_a_failed_write_leaves_nothing(tmp_path):
    staged = stage_directory(tmp_path, "out", _writer("one"))
    assert staged.parent == tmp_path and staged.name.startswith(".out.partial-")
    assert read_manifest(staged) == {"provenance": {"content": "one"},
                                     "files": {"sub/a.txt": sha256_file(staged / "sub/a.txt")}}

    def broken(directory):
        (directory / "half.txt").write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        stage_directory(tmp_path, "out", broken)
    assert list(tmp_path.iterdir()) == [staged]


def test_publish_refuses_a_folder_stage_directory_did_not_finish(tmp_path):
    """An input folder passed on by mistake is neither moved nor deleted."""
    generated = tmp_path / "sentinel2"
    replace_directory(generated, _writer("tiles"))
    with pytest.raises(ValueError, match="not a folder made by stage_directory"):
        publish_directory(tmp_path / "shards", generated)
    unfinished = staging_path(tmp_path / "staging" / "shards", "partial")
    unfinished.mkdir(parents=True)
    with pytest.raises(ValueError, match="no readable"):
        publish_directory(tmp_path / "shards", unfinished)
    assert (generated / "sub" / "a.txt").read_text() == "tiles" and unfinished.is_dir()
    assert not (tmp_path / "shards").exists()


def test_a_refused_publish_drops_the_staged_folder_and_keeps_the_target(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (real / "metadata_common_attributes.csv").write_text("uuid\n")
    staged = stage_directory(tmp_path / "staging", "real", _writer("x"))
    with pytest.raises(NotGeneratedError, match="did not generate"):
        publish_directory(real, staged)
    assert [p.name for p in real.iterdir()] == ["metadata_common_attributes.csv"]
    assert list((tmp_path / "staging").iterdir()) == []


def test_publish_copies_a_folder_staged_on_another_file_system(tmp_path, monkeypatch):
    import errno
    import os

    target = tmp_path / "data" / "out"
    replace_directory(target, _writer("one"))
    staged = stage_directory(tmp_path / "elsewhere", "out", _writer("two"))

    def cross_device(source, destination):
        raise OSError(errno.EXDEV, "Invalid cross-device link", str(source))

    monkeypatch.setattr(os, "rename", cross_device)
    manifest = publish_directory(target, staged)
    assert (target / "sub" / "a.txt").read_text() == "two"
    assert read_manifest(target) == manifest and manifest["provenance"] == {"content": "two"}
    assert not staged.exists()
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["out"]


def test_a_failed_swap_restores_the_old_folder(tmp_path, monkeypatch):
    import os

    target = tmp_path / "out"
    replace_directory(target, _writer("old"))
    staged = stage_directory(tmp_path / "staging", "out", _writer("new"))
    replace, failed = os.replace, []

    def fail_into_target(source, destination):
        if Path(destination) == target and not failed:  # the new folder, not the restore
            failed.append(source)
            raise OSError("interrupted")
        replace(source, destination)

    monkeypatch.setattr(os, "replace", fail_into_target)
    with pytest.raises(OSError, match="interrupted"):
        publish_directory(target, staged)
    monkeypatch.undo()
    assert (target / "sub" / "a.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "staging"]
    assert list((tmp_path / "staging").iterdir()) == []


@pytest.mark.parametrize("change", ["added", "changed"])
def test_refuses_to_replace_a_generated_folder_with_user_files(tmp_path, change):
    target = tmp_path / "out"
    replace_directory(target, _writer("one"))
    if change == "added":
        for n in range(7):
            (target / "sub" / f"my_labels_{n}.csv").write_text("uuid,label\n")
    else:
        (target / "sub" / "a.txt").write_text("edited by hand")
    before = {p: p.read_bytes() for p in target.rglob("*") if p.is_file()}
    with pytest.raises(NotGeneratedError) as refused:
        replace_directory(target, _writer("two"))
    message = str(refused.value)
    if change == "added":
        assert "7 added" in message and "sub/my_labels_0.csv" in message
        assert "and 2 more" in message and "sub/my_labels_6.csv" not in message
    else:
        assert "1 changed (sub/a.txt)" in message
    assert "Move the files you want to keep out of" in message and "delete the folder" in message
    assert {p: p.read_bytes() for p in target.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_replaces_a_generated_folder_with_files_missing(tmp_path):
    target = tmp_path / "out"
    replace_directory(target, _writer("one"))
    (target / "sub" / "a.txt").unlink()  # nothing of the user's would be lost
    replace_directory(target, _writer("two"))
    assert (target / "sub" / "a.txt").read_text() == "two"


def test_refuses_a_folder_whose_manifest_is_unreadable(tmp_path):
    target = tmp_path / "out"
    replace_directory(target, _writer("one"))
    (target / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(NotGeneratedError, match=rf"{MANIFEST_NAME} is not a readable"):
        replace_directory(target, _writer("two"))
    assert (target / "sub" / "a.txt").read_text() == "one"


def _ended_pid() -> int:
    import subprocess
    import sys

    process = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                             capture_output=True, text=True, check=True)
    return int(process.stdout)


def test_next_replace_removes_staging_folders_of_killed_runs_only(tmp_path, caplog):
    import os
    import time

    from gair.io.directories import ABANDONED_AFTER_S

    target = tmp_path / "out"
    replace_directory(target, _writer("one"))
    killed = [staging_path(target, kind, pid=_ended_pid()) for kind in ("partial", "old")]
    running = staging_path(target, "partial", pid=os.getpid())  # a concurrent run's
    other_host_old = tmp_path / ".out.partial-elsewhere-1-0123abcd"
    other_host_new = tmp_path / ".out.partial-elsewhere-1-4567cdef"
    older_gair = tmp_path / ".out.old-89abcdef"
    not_ours = [tmp_path / ".outer.partial-0123abcd", tmp_path / ".out.partial-notes"]
    for folder in [*killed, running, other_host_old, other_host_new, older_gair, *not_ours]:
        folder.mkdir()
        (folder / "f").write_text("x")
    long_ago = time.time() - ABANDONED_AFTER_S - 60
    for folder in (other_host_old, older_gair):
        os.utime(folder, (long_ago, long_ago))

    with caplog.at_level("WARNING", logger="gair.io.directories"):
        replace_directory(target, _writer("two"))

    removed = sorted([*killed, other_host_old, older_gair])
    assert sorted(p for p in tmp_path.iterdir() if p.name.startswith(".")) == sorted(
        [running, other_host_new, *not_ours])
    assert (target / "sub" / "a.txt").read_text() == "two"
    for folder in removed:
        assert str(folder) in caplog.text
