"""The writer of output folders: one folder per recognition.

    outputs/outputs_YYYYMMDD_HHMMSS[_N]/
        processed_audio.wav   the 16 kHz mono waveform the model saw (16-bit PCM WAV; 32-bit
                              float when a sample lies outside [-1, 1], so nothing is clipped)
        result.json           emotion, confidence, scores, granularity, timestamp, ...
        embedding.npy         only when asked: (D,) utterance, (T, D) frame or (S, D) segment features
        segments.csv/.srt/.vtt  segment mode only: the segment table and subtitles (subtitles.py)

A folder is written under a hidden temporary name (`.incomplete_<pid>_<random>`) and
renamed into place, so it appears complete or not at all; an existing folder is never
overwritten (a second recognition in the same second gets the suffix _2, _3, ...).
Folders and files get their permissions from the process umask: they hold people's
voices. `sweep_staging` removes the staging folders of processes that died mid-save.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import secrets
import shutil
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import soundfile as sf

from ..audio.decode import SAMPLE_RATE, Audio
from ..errors import OutputWriteError
from ..results import EmotionResult
from .subtitles import write_segment_files

DEFAULT_OUTPUT_ROOT = "outputs"
FOLDER_PREFIX = "outputs_"
TIMESTAMP_FORMAT = "%Y%m%d_%H%M%S"
AUDIO_FILE = "processed_audio.wav"
RESULT_FILE = "result.json"
EMBEDDING_FILE = "embedding.npy"
MAX_SUFFIX = 1000
STAGING_PREFIX = ".incomplete_"
STALE_STAGING_S = 24 * 3600.0  # a staging folder this old is abandoned even if its process id is alive again

log = logging.getLogger(__name__)


def save_recognition(
    result: EmotionResult,
    audio: Audio | np.ndarray,
    output_root: str | os.PathLike = DEFAULT_OUTPUT_ROOT,
    *,
    now: datetime | None = None,
) -> Path:
    """Write the folder for one recognition and return its path.

    `audio` is the decoded input (or its (N,) 16 kHz waveform); the embedding is saved
    when `result.embedding` is set, i.e. when the recognition asked for it.
    """
    now = now or datetime.now()
    root = Path(output_root)
    waveform = audio.waveform if isinstance(audio, Audio) else np.asarray(audio, dtype=np.float32)
    try:
        root.mkdir(parents=True, exist_ok=True)
        staging = root / f"{STAGING_PREFIX}{os.getpid()}_{secrets.token_hex(8)}"
        staging.mkdir()  # permissions from the umask
    except OSError as e:
        raise OutputWriteError(f"cannot create an output folder in {root}: {e.strerror or e}") from e
    try:
        peak = float(np.abs(waveform).max()) if len(waveform) else 0.0
        sf.write(staging / AUDIO_FILE, waveform, SAMPLE_RATE, subtype="PCM_16" if peak <= 1.0 else "FLOAT")
        data = {**result.to_dict(), "timestamp": now.isoformat(timespec="seconds")}
        if result.embedding is not None:
            np.save(staging / EMBEDDING_FILE, result.embedding.astype(np.float32))
            data["embedding_file"] = EMBEDDING_FILE
        if result.granularity == "segment":
            data.update(write_segment_files(result, staging))
        data["audio_file"] = AUDIO_FILE
        (staging / RESULT_FILE).write_text(result_json(data), encoding="utf-8")
        return _publish(staging, root, FOLDER_PREFIX + now.strftime(TIMESTAMP_FORMAT))
    except OSError as e:
        shutil.rmtree(staging, ignore_errors=True)
        raise OutputWriteError(f"cannot write the output folder in {root}: {e.strerror or e}") from e
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def folder_bytes(folder: Path) -> int:
    """Total size of the files in `folder`, in bytes."""
    return sum(path.stat().st_size for path in folder.iterdir() if path.is_file())


def check_new_or_empty(folder: Path, what: str, example: str) -> None:
    """OutputWriteError unless `folder` is new or an empty folder, so that writing `what`
    ("the export") into it overwrites nothing (`example` names what could be lost there)."""
    if folder.exists() and not folder.is_dir():
        raise OutputWriteError(f"{folder} is a file; give a new folder for {what}.")
    if folder.is_dir() and any(folder.iterdir()):
        raise OutputWriteError(f"{folder} is not empty; {what} goes into a new or empty folder, so that nothing "
                               f"in it ({example}, say) is overwritten.")


def check_free_space(output_root: str | os.PathLike, min_free_bytes: int) -> None:
    """Raise OutputWriteError when the disk holding `output_root` has under `min_free_bytes` free."""
    root = Path(output_root)
    existing = next((p for p in [root, *root.resolve().parents] if p.exists()), Path("."))
    free = shutil.disk_usage(existing).free
    if free < min_free_bytes:
        raise OutputWriteError(
            f"the output folder's disk is nearly full ({free / 2**20:.0f} MB free, {min_free_bytes / 2**20:.0f} MB "
            "kept in reserve by the min-free-disk-mb setting), so no recognition can be saved now. Free some "
            "space and try again (on a shared server, tell its owner)."
        )


def sweep_staging(output_root: str | os.PathLike) -> list[Path]:
    """Remove staging folders left by processes that died mid-save; returns what was removed.

    A folder belongs to a dead process when the process id in its name no longer runs
    (or it is older than STALE_STAGING_S); a live process's save in progress is kept.
    """
    root = Path(output_root)
    if not root.is_dir():
        return []
    removed = []
    for path in root.glob(STAGING_PREFIX + "*"):
        if path.is_dir() and _abandoned(path):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    if removed:
        log.info("removed %d unfinished output folder(s) left by a stopped process in %s", len(removed), root)
    return removed


def _abandoned(staging: Path) -> bool:
    pid_text = staging.name[len(STAGING_PREFIX):].partition("_")[0]
    try:
        age_s = time.time() - staging.stat().st_mtime
    except FileNotFoundError:
        return False
    if age_s > STALE_STAGING_S or not pid_text.isdigit():
        return True
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def result_json(data: dict) -> str:
    """Indented JSON with each row of `frame_scores` on one line, so long tracks stay readable."""
    rows = data.get("frame_scores")
    if rows is None:
        return json.dumps(data, ensure_ascii=False, indent=2)
    placeholder = "@@frame_scores@@"
    text = json.dumps({**data, "frame_scores": placeholder}, ensure_ascii=False, indent=2)
    body = ",\n    ".join(json.dumps(row) for row in rows)
    return text.replace(f'"{placeholder}"', f"[\n    {body}\n  ]" if rows else "[]")


def _publish(staging: Path, root: Path, name: str) -> Path:
    """Rename `staging` to root/name, or name_2, name_3, ... if taken; never replaces."""
    for suffix in range(1, MAX_SUFFIX + 1):
        target = root / (name if suffix == 1 else f"{name}_{suffix}")
        if target.exists():
            continue
        try:
            os.rename(staging, target)  # a non-empty existing target makes this fail
            return target
        except OSError as e:
            if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
    raise FileExistsError(f"{root}: more than {MAX_SUFFIX} output folders named {name}*")
