"""The files of one batch sent to the web server: uploads, and the audio inside .zip archives.

    files = gather_uploads(paths, workdir, limits)   # BatchLimitError when over a limit

An upload is taken as it is (decoding says whether it is audio). A `.zip` is opened and
its audio entries (by suffix, manifest.AUDIO_SUFFIXES) are extracted into `workdir`
under numbered names: an entry's own path is never used as a place to write, so names
like `../../x.wav` or `/etc/x.wav` cannot escape (they are reported as unsafe, not
extracted). Every entry is checked before anything is extracted: the audio entries
count towards the batch's file limit, their declared sizes towards its size limit, and
each is streamed out with a cap at its declared size, so an archive that lies about
its sizes cannot fill the disk. Entries that are not audio, links, archives inside the
archive, and encrypted or damaged entries become files with an `error` (reported in
the results table, not recognised). Folders, `__MACOSX/` and hidden files are skipped.
"""

from __future__ import annotations

import shutil
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..batch.manifest import AUDIO_SUFFIXES
from ..errors import Emotion2vecError

ZIP_SUFFIX = ".zip"
MAX_ZIP_ENTRIES = 10_000  # an archive with more entries is refused whole
COPY_CHUNK = 1 << 20  # bytes per read while extracting
SKIPPED_FOLDERS = ("__MACOSX",)  # macOS resource forks: never audio


class BatchLimitError(Emotion2vecError, ValueError):
    """A batch over the server's limits (files per batch, total size, entries in an archive)."""


@dataclass(frozen=True)
class BatchLimits:
    """A web batch's limits: files (audio files, archives counted by their audio), total
    bytes of audio (archives by their entries' uncompressed sizes), bytes per file."""

    max_files: int
    max_total_bytes: int
    max_file_bytes: int


@dataclass
class BatchFile:
    """One file of a batch. `name` is how the user knows it ("a.wav", "calls.zip/day1/b.wav");
    `path` is where it can be read, None when it was refused (then `error` says why)."""

    name: str
    path: Path | None
    size_bytes: int
    error: str = ""


@dataclass
class _Entry:
    """An audio entry of an archive, planned but not yet extracted."""

    archive: Path
    info: zipfile.ZipInfo
    file: BatchFile


def gather_uploads(uploads: list[str | Path], workdir: Path, limits: BatchLimits) -> list[BatchFile]:
    """The files of a batch, in upload order (an archive's entries in its own order).

    Raises BatchLimitError, before extracting anything, when the batch is over a limit.
    """
    files: list[BatchFile] = []
    entries: list[_Entry] = []
    for upload in uploads:
        path = Path(upload)
        if path.suffix.lower() == ZIP_SUFFIX:
            found, planned = _plan_archive(path, limits)
            files += found
            entries += planned
        else:
            files.append(BatchFile(path.name, path, _size(path)))
    check_limits(files, limits)
    workdir.mkdir(parents=True, exist_ok=True)
    for number, entry in enumerate(entries):
        _extract(entry, workdir / f"{number:05d}{PurePosixPath(entry.info.filename).suffix.lower()}")
    return files


def check_limits(files: list[BatchFile], limits: BatchLimits) -> None:
    """BatchLimitError when the usable files are too many or too big together."""
    usable = [f for f in files if not f.error]
    if not usable:
        raise BatchLimitError("No audio files in this batch: add audio files (WAV, MP3, M4A, FLAC, OGG, WEBM) "
                              "or a .zip holding them.")
    if len(usable) > limits.max_files:
        raise BatchLimitError(
            f"This batch holds {len(usable)} audio files; this server takes at most {limits.max_files} per batch "
            "(setting batch_max_files). Send them in smaller batches, or run the batch command "
            "(python -m emotion2vec_ui batch) on your own machine."
        )
    total = sum(f.size_bytes for f in usable)
    if total > limits.max_total_bytes:
        raise BatchLimitError(
            f"This batch holds {total / 2**20:.1f} MB of audio; this server takes at most "
            f"{limits.max_total_bytes / 2**20:g} MB per batch (setting batch_max_mb). Send it in smaller batches."
        )


def _plan_archive(path: Path, limits: BatchLimits) -> tuple[list[BatchFile], list[_Entry]]:
    """The files an archive contributes and its audio entries to extract; a damaged
    archive is one file with an error."""
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        return [BatchFile(path.name, None, _size(path), f"{path.name}: not a readable .zip archive ({e}).")], []
    if len(infos) > MAX_ZIP_ENTRIES:
        raise BatchLimitError(f"{path.name} has {len(infos)} entries; an archive may have at most "
                              f"{MAX_ZIP_ENTRIES}. Split it into smaller archives.")
    files, entries = [], []
    for info in infos:
        entry_path = PurePosixPath(info.filename.replace("\\", "/"))
        if info.is_dir() or entry_path.name.startswith(".") or entry_path.parts[0] in SKIPPED_FOLDERS:
            continue
        name = f"{path.name}/{info.filename}"
        refusal = _refusal(info, entry_path, limits)
        if refusal:
            files.append(BatchFile(name, None, info.file_size, f"{name}: {refusal}; skipped."))
            continue
        file = BatchFile(name, None, info.file_size)
        files.append(file)
        entries.append(_Entry(path, info, file))
    return files, entries


def _refusal(info: zipfile.ZipInfo, entry_path: PurePosixPath, limits: BatchLimits) -> str:
    """Why an archive entry is not extracted ("" when it is)."""
    suffix = entry_path.suffix.lower()
    if entry_path.is_absolute() or ".." in entry_path.parts or ":" in entry_path.parts[0]:
        return "unsafe path in the archive (absolute, or with '..')"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "a link, not a file"
    if suffix == ZIP_SUFFIX:
        return "archives inside an archive are not opened (add the inner .zip on its own)"
    if suffix not in AUDIO_SUFFIXES:
        return f"not an audio file (its name ends in {suffix or 'no suffix'}; audio is {', '.join(AUDIO_SUFFIXES)})"
    if info.flag_bits & 0x1:
        return "encrypted (password-protected entries cannot be read)"
    if info.file_size > limits.max_file_bytes:
        return (f"{info.file_size / 2**20:.1f} MB, over this server's limit of "
                f"{limits.max_file_bytes / 2**20:g} MB per file")
    return ""


def _extract(entry: _Entry, target: Path) -> None:
    """Stream one entry to `target`, never past its declared size; a failure becomes the file's error."""
    written = 0
    try:
        with zipfile.ZipFile(entry.archive) as archive, archive.open(entry.info) as source, open(target, "wb") as out:
            while chunk := source.read(COPY_CHUNK):
                written += len(chunk)
                if written > entry.info.file_size:
                    raise zipfile.BadZipFile("the entry holds more data than it declares")
                out.write(chunk)
        entry.file.path = target
    except (zipfile.BadZipFile, OSError, RuntimeError, ValueError, EOFError) as e:
        target.unlink(missing_ok=True)
        entry.file.error = f"{entry.file.name}: cannot be extracted from the archive ({e}); skipped."


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def remove_workdir(workdir: Path) -> None:
    """Delete a batch's extracted files."""
    shutil.rmtree(workdir, ignore_errors=True)
