"""Generated folders are written whole or not at all, and never over real data."""

from __future__ import annotations

import pytest
from kedro.io.core import DatasetError

from gair.datasets import DirectoryDataset
from gair.io.directories import (
    MANIFEST_NAME,
    NotGeneratedError,
    read_manifest,
    replace_directory,
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


def test_directory_dataset(tmp_path):
    dataset = DirectoryDataset(path=str(tmp_path / "d"))
    assert not dataset.exists()
    with pytest.raises(DatasetError, match="does not exist"):
        dataset.load()
    with pytest.raises(DatasetError, match="write"):
        dataset.save("not a writer")

    class Writer:
        def write(self, directory):
            (directory / "f").write_text("x")
            return {}

    dataset.save(Writer())
    assert dataset.exists() and dataset.load() == tmp_path / "d"


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

    from gair.io.directories import ABANDONED_AFTER_S, staging_path

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
