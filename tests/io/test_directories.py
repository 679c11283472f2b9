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
