"""The benchmark's fixed inputs, built once and cached: a random-weight checkpoint and synthetic audio.

Everything is deterministic, so a cached file is reused whenever its name matches:
clip i of the set always has the same duration, format, rate, channels and content.

- the clip set: `count` clips of 1 to `max_s` seconds, cycling through the formats,
  sample rates and channel counts users upload (two of them, M4A and WEBM, need
  FFmpeg, which the reference's own file loader does not have without a system ffmpeg);
- a 10 s clip (MP3, 44.1 kHz stereo) for the single-request and start-up figures;
- a 30 s clip (MP3, 44.1 kHz stereo) for the profile;
- a long recording (16 kHz mono WAV) and the same samples cut into 30 s WAV parts.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

CHECKPOINT_STAMP = ".complete"  # written after model.pt, so a half-built folder is rebuilt
PART_S = 30  # seconds per part when the long recording is cut into clips
LONG_RATE = 16_000  # Hz of the long recording and its parts

# (format, sample rate in Hz, channels), cycled over the clip set; see testdata.ENCODINGS.
FORMAT_CYCLE = (
    ("wav", 16_000, 1),
    ("mp3", 44_100, 2),
    ("m4a", 48_000, 2),
    ("opus", 48_000, 1),
    ("flac", 44_100, 2),
    ("wav", 44_100, 2),
    ("ogg", 44_100, 2),
    ("webm", 48_000, 1),
    ("wav_s24", 48_000, 2),
    ("mp3", 22_050, 1),
    ("wav_u8", 8_000, 1),
    ("flac", 16_000, 1),
    ("m4a", 44_100, 1),
    ("wav_f32", 96_000, 1),
    ("opus", 16_000, 1),
    ("wav_s32", 22_050, 2),
)


@dataclass(frozen=True)
class Clip:
    """One synthetic recording: how long it is and how it is encoded."""

    name: str  # file name in the audio folder
    seconds: float
    fmt: str  # a key of emotion2vec_ui.audio.testdata.ENCODINGS
    rate: int  # Hz
    channels: int
    seed: int

    def write(self, folder: Path) -> Path:
        """Encode the clip into `folder` unless it is already there; returns its path."""
        from emotion2vec_ui.audio.testdata import voice_like, write_audio

        path = folder / self.name
        if not path.is_file():
            samples = voice_like(self.seconds, self.rate, self.channels, seed=self.seed)
            _write_atomically(path, lambda tmp: write_audio(tmp, samples, self.rate, self.fmt))
        return path


def clip_set(count: int, max_s: float) -> list[Clip]:
    """`count` clips with durations spread evenly over 1..`max_s` seconds, in a fixed shuffled order."""
    from emotion2vec_ui.audio.testdata import suffix_for

    durations = np.round(np.linspace(1.0, max_s, count), 1)
    order = np.random.default_rng(7).permutation(count)
    clips = []
    for index in range(count):
        fmt, rate, channels = FORMAT_CYCLE[index % len(FORMAT_CYCLE)]
        seconds = float(durations[order[index]])
        name = f"clip{index:02d}_{seconds:04.1f}s_{fmt}_{rate}_{channels}ch{suffix_for(fmt)}"
        clips.append(Clip(name, seconds, fmt, rate, channels, seed=100 + index))
    return clips


def single_clip() -> Clip:
    """The 10 s clip for single-request and start-up timings: MP3, 44.1 kHz stereo."""
    return Clip("single_10s_mp3_44100_2ch.mp3", 10.0, "mp3", 44_100, 2, seed=1)


def profile_clip() -> Clip:
    """The 30 s clip the profile breaks down: MP3, 44.1 kHz stereo."""
    return Clip("profile_30s_mp3_44100_2ch.mp3", 30.0, "mp3", 44_100, 2, seed=2)


def long_recording(folder: Path, seconds: int) -> tuple[Path, list[Path]]:
    """The long WAV and its 30 s parts (the same samples), written once; returns their paths.

    The recording is made of 30 s stretches of differently seeded voice, so its sound
    changes over time like a conversation.
    """
    from emotion2vec_ui.audio.testdata import voice_like, write_audio

    path = folder / f"long_{seconds}s.wav"
    parts = [folder / f"long_{seconds}s_part{k:02d}.wav" for k in range(-(-seconds // PART_S))]
    if path.is_file() and all(part.is_file() for part in parts):
        return path, parts
    stretches = [voice_like(min(PART_S, seconds - start), LONG_RATE, 1, seed=1000 + k)
                 for k, start in enumerate(range(0, seconds, PART_S))]
    waveform = np.concatenate(stretches)
    _write_atomically(path, lambda tmp: write_audio(tmp, waveform, LONG_RATE, "wav"))
    for k, part in enumerate(parts):
        piece = waveform[k * PART_S * LONG_RATE : (k + 1) * PART_S * LONG_RATE]
        _write_atomically(part, lambda tmp, piece=piece: write_audio(tmp, piece, LONG_RATE, "wav"))
    return path, parts


def ensure_checkpoint(cache: Path, size: str) -> Path:
    """The cached random-weight checkpoint folder of `size` ("tiny" or "large"), built if missing.

    "large" has the published plus_large sizes (164 M parameters, about 650 MB on disk).
    """
    from emotion2vec_ui.engine.checkpoint import build_checkpoint

    folder = cache / f"checkpoint-{size}"
    if (folder / CHECKPOINT_STAMP).is_file():
        return folder
    shutil.rmtree(folder, ignore_errors=True)  # a build that was cut short
    build_checkpoint(folder, size)
    (folder / CHECKPOINT_STAMP).write_text("built by bench/audioset.py\n", encoding="utf-8")
    return folder


def prepare(cache: Path, size: str, clips: int, clip_max_s: float, long_s: int | None) -> dict:
    """Build or reuse every input of a run; returns the paths (str) and clip descriptions.

    Keys: checkpoint, single, profile, clips (list of {path, seconds, fmt, rate, channels}),
    long (path or None) and parts (list of paths).
    """
    audio = cache / "audio"
    audio.mkdir(parents=True, exist_ok=True)
    described = []
    for clip in clip_set(clips, clip_max_s):
        fields = asdict(clip)
        described.append({"path": str(clip.write(audio)), **{k: fields[k] for k in ("seconds", "fmt", "rate", "channels")}})
    long_path, parts = long_recording(audio, long_s) if long_s else (None, [])
    return {
        "checkpoint": str(ensure_checkpoint(cache, size)),
        "single": str(single_clip().write(audio)),
        "profile": str(profile_clip().write(audio)),
        "clips": described,
        "long": str(long_path) if long_path else None,
        "parts": [str(part) for part in parts],
    }


def _write_atomically(path: Path, write) -> None:
    """Call `write(tmp_path)` and rename the result into place, so no half-written file is cached."""
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
