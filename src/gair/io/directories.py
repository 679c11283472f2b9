"""Write a generated folder as a whole: all of it appears, or none of it does.

A writer fills a staging folder beside the target; the staging folder is then swapped in
place of the target. A folder is only ever replaced when it is empty or was generated
here before (it holds :data:`MANIFEST_NAME`), so real data is never overwritten.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

MANIFEST_NAME = ".gair-generated.json"
"""Manifest of a generated folder: who wrote it and the SHA-256 of every file."""


class DirectoryWriter(Protocol):
    """Something that can write its content into an empty folder."""

    def write(self, directory: Path) -> dict[str, Any]:
        """Write into ``directory`` (empty, existing); return provenance for the manifest."""


class NotGeneratedError(RuntimeError):
    """Raised instead of overwriting a folder that holds data not generated here."""


def sha256_file(path: Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def file_checksums(directory: Path) -> dict[str, str]:
    """SHA-256 of every file under ``directory`` by POSIX relative path, manifest excluded."""
    return {
        path.relative_to(directory).as_posix(): sha256_file(path)
        for path in sorted(directory.rglob("*"))
        if path.is_file() and path.name != MANIFEST_NAME
    }


def read_manifest(directory: Path) -> dict[str, Any]:
    """The manifest of a generated folder."""
    return json.loads((Path(directory) / MANIFEST_NAME).read_text())


def _check_replaceable(target: Path) -> None:
    if not target.exists():
        return
    if not target.is_dir():
        raise NotGeneratedError(f"{target} exists and is not a folder; refusing to replace it")
    if (target / MANIFEST_NAME).is_file() or not any(target.iterdir()):
        return
    raise NotGeneratedError(
        f"{target} holds files that gair did not generate (no {MANIFEST_NAME}); refusing to "
        "replace it. If this is your real data, run only the pipelines that read it "
        "(e.g. `kedro run --pipelines ingest,...`), not `sample_world`."
    )


def replace_directory(
    target: Path | str,
    write: Callable[[Path], dict[str, Any]],
    on_written: Callable[[Path], None] | None = None,
) -> dict[str, Any]:
    """Atomically replace ``target`` with what ``write`` puts into a fresh folder.

    Args:
        target: the folder to (re)create. Must be absent, empty, or generated before.
        write: fills the folder it is given and returns provenance for the manifest.
        on_written: optional check run on the staged folder before it is swapped in.

    Returns:
        The manifest written to ``target / MANIFEST_NAME``.
    """
    target = Path(target)
    _check_replaceable(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex[:8]
    staging = target.parent / f".{target.name}.partial-{token}"
    retired = target.parent / f".{target.name}.old-{token}"
    staging.mkdir()
    try:
        provenance = write(staging)
        if on_written is not None:
            on_written(staging)
        manifest = {"provenance": provenance, "files": file_checksums(staging)}
        (staging / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1, sort_keys=True))
        if target.exists():
            os.replace(target, retired)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if retired.exists() and not target.exists():
            os.replace(retired, target)
        raise
    shutil.rmtree(retired, ignore_errors=True)
    return manifest
