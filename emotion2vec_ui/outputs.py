"""The only module that writes files: one folder per recognition.

    outputs/outputs_YYYYMMDD_HHMMSS[_N]/
        processed_audio.wav   the 16 kHz mono waveform the model saw (32-bit float WAV)
        result.json           emotion, confidence, scores, granularity, timestamp, ...
        embedding.npy         only when asked: (D,) utterance, (T, D) frame or (S, D) segment features
        segments.csv/.srt/.vtt  segment mode only: the segment table and subtitles (subtitles.py)

A folder is written under a hidden temporary name and renamed into place, so it
appears complete or not at all; an existing folder is never overwritten (a second
recognition in the same second gets the suffix _2, _3, ...).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from datetime import datetime
from pathlib import Path

import numpy as np
import soundfile as sf

from .audio import SAMPLE_RATE, Audio
from .results import EmotionResult
from .subtitles import write_segment_files

DEFAULT_OUTPUT_ROOT = "outputs"
FOLDER_PREFIX = "outputs_"
TIMESTAMP_FORMAT = "%Y%m%d_%H%M%S"
AUDIO_FILE = "processed_audio.wav"
RESULT_FILE = "result.json"
EMBEDDING_FILE = "embedding.npy"
MAX_SUFFIX = 1000


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
    root.mkdir(parents=True, exist_ok=True)
    waveform = audio.waveform if isinstance(audio, Audio) else np.asarray(audio, dtype=np.float32)
    staging = Path(tempfile.mkdtemp(prefix=".incomplete_", dir=root))
    try:
        sf.write(staging / AUDIO_FILE, waveform, SAMPLE_RATE, subtype="FLOAT")
        data = {**result.to_dict(), "timestamp": now.isoformat(timespec="seconds")}
        if result.embedding is not None:
            np.save(staging / EMBEDDING_FILE, result.embedding.astype(np.float32))
            data["embedding_file"] = EMBEDDING_FILE
        if result.granularity == "segment":
            data.update(write_segment_files(result, staging))
        data["audio_file"] = AUDIO_FILE
        (staging / RESULT_FILE).write_text(result_json(data), encoding="utf-8")
        os.chmod(staging, 0o755)
        return _publish(staging, root, FOLDER_PREFIX + now.strftime(TIMESTAMP_FORMAT))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


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
