"""The inputs of a batch: files, folders searched recursively, and manifests.

A manifest is a text file with one path per line (blank lines and `#` comments
skipped) or a CSV file with a `path` column; relative paths in a manifest are read
from the manifest's own folder. Every input gets a stable id (a hash of its resolved
path) and a resume key (path, size, modification time) that tells whether a row in
an existing table is still about the same file.
"""

from __future__ import annotations

import csv
import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..audio.formats import AUDIO_SUFFIXES  # a folder search picks up these; other files are ignored
from ..errors import Emotion2vecError

TEXT_MANIFEST_SUFFIXES = (".txt", ".lst", ".list")
CSV_MANIFEST_SUFFIXES = (".csv",)
MANIFEST_PATH_COLUMN = "path"
ID_LENGTH = 16  # hex digits of the SHA-1 of the resolved path


class ManifestError(Emotion2vecError, ValueError):
    """A manifest cannot be read or has no `path` column."""


@dataclass(frozen=True)
class BatchInput:
    """One input of a batch. `size_bytes` and `mtime_ns` are None for a path that is not a file."""

    path: str  # absolute, resolved
    id: str
    size_bytes: int | None
    mtime_ns: int | None

    @property
    def key(self) -> tuple[str, int | None, int | None]:
        """(path, size, mtime): a row with this key is about this very file."""
        return (self.path, self.size_bytes, self.mtime_ns)


def batch_input(path: str | os.PathLike) -> BatchInput:
    """The BatchInput of one path (which need not exist: decoding reports that)."""
    resolved = str(Path(path).expanduser().resolve())
    try:
        stat = os.stat(resolved)
        size, mtime = (stat.st_size, stat.st_mtime_ns) if Path(resolved).is_file() else (None, None)
    except OSError:
        size, mtime = None, None
    return BatchInput(resolved, input_id(resolved), size, mtime)


def input_id(resolved_path: str) -> str:
    """A stable id for a resolved path: the first ID_LENGTH hex digits of its SHA-1."""
    return hashlib.sha1(resolved_path.encode("utf-8", "surrogateescape")).hexdigest()[:ID_LENGTH]


def discover_inputs(inputs: Iterable[str | os.PathLike]) -> list[BatchInput]:
    """Expand files, folders and manifests into BatchInputs, in order, each path once.

    A folder contributes its audio files (AUDIO_SUFFIXES, any case) found recursively,
    sorted, skipping hidden files and folders; a `.txt`/`.lst`/`.list` or `.csv` file is
    read as a manifest; anything else is an input in itself (a missing or non-audio
    file becomes an error row when it is decoded).
    """
    found: dict[str, BatchInput] = {}
    for item in inputs:
        for path in _expand(Path(item)):
            entry = batch_input(path)
            found.setdefault(entry.path, entry)
    return list(found.values())


def _expand(path: Path) -> list[Path]:
    if path.is_dir():
        return find_audio_files(path)
    suffix = path.suffix.lower()
    if path.is_file() and suffix in TEXT_MANIFEST_SUFFIXES + CSV_MANIFEST_SUFFIXES:
        return [entry if entry.is_absolute() else path.parent / entry for entry in read_manifest(path)]
    return [path]


def find_audio_files(folder: Path) -> list[Path]:
    """Audio files under `folder`, recursively, sorted; hidden entries are skipped."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(root) / f for f in sorted(files)
                  if not f.startswith(".") and Path(f).suffix.lower() in AUDIO_SUFFIXES]
    return found


def read_manifest(path: Path) -> list[Path]:
    """The paths a manifest lists, as written (relative ones not yet resolved)."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            if path.suffix.lower() in CSV_MANIFEST_SUFFIXES:
                reader = csv.DictReader(f)
                if MANIFEST_PATH_COLUMN not in (reader.fieldnames or []):
                    raise ManifestError(
                        f"{path}: a CSV manifest needs a '{MANIFEST_PATH_COLUMN}' column "
                        f"(found: {', '.join(reader.fieldnames or []) or 'no header'}); add a header line "
                        f"starting with '{MANIFEST_PATH_COLUMN}'"
                    )
                lines = [row[MANIFEST_PATH_COLUMN] or "" for row in reader]
            else:
                lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ManifestError(f"{path}: cannot read the manifest ({e}); it must be UTF-8 text") from e
    return [Path(line.strip()) for line in lines if line.strip() and not line.strip().startswith("#")]
