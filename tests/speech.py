"""Conversations assembled from real speech with known pauses: espeak-ng voices and the example clip.

Each builder returns the (N,) or (N, C) float32 16 kHz waveform and the known speech
regions [(start_s, end_s, who)], measured on the clean pieces before they are joined.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np

from emotion2vec_ui.audio.decode import SAMPLE_RATE, load_audio
from emotion2vec_ui.audio.testdata import speak, speech_bounds

EXAMPLE_CLIP = Path(__file__).resolve().parents[1] / "emotion2vec_ui" / "assets" / "example_zh.wav"
NOISE_LEVEL = 1e-3  # standard deviation of the background noise added to every recording

# (voice, line): a call between a low and a high voice.
DIALOGUE = [
    ("low", "Good morning I am calling about my internet bill"),
    ("high", "Of course I can help you with that today"),
    ("low", "It is twice as much as last month"),
    ("high", "Let me look at the account details"),
    ("low", "I never ordered the premium package"),
    ("high", "I see the upgrade here and I will remove it"),
    ("low", "Thank you that is all I wanted"),
]
Region = tuple[float, float, str]


@cache
def line(voice: str, text: str) -> np.ndarray:
    """`text` in an espeak-ng voice, its leading and trailing silence cut off."""
    wave = speak(text, voice)
    first, last = speech_bounds(wave)
    return wave[first:last]


def example_clip() -> np.ndarray:
    return load_audio(EXAMPLE_CLIP).waveform


def assemble(pieces: list[tuple[str, np.ndarray]], pauses_s: list[float], seed: int = 0) -> tuple[np.ndarray, list[Region]]:
    """pauses_s[0] of silence, piece 0, pauses_s[1], piece 1, ..., then pauses_s[-1]; light noise on top."""
    assert len(pauses_s) == len(pieces) + 1
    parts, regions, position = [], [], 0
    for (who, wave), pause in zip([("", None), *pieces], pauses_s):
        if wave is not None:
            first, last = speech_bounds(wave)
            regions.append(((position + first) / SAMPLE_RATE, (position + last) / SAMPLE_RATE, who))
            parts.append(wave)
            position += len(wave)
        parts.append(np.zeros(int(pause * SAMPLE_RATE), dtype=np.float32))
        position += len(parts[-1])
    waveform = np.concatenate(parts)
    noise = np.random.default_rng(seed).normal(0, NOISE_LEVEL, len(waveform))
    return (waveform + noise).astype(np.float32), regions


def dialogue(pauses_s: list[float] | None = None, lines: int = len(DIALOGUE)) -> tuple[np.ndarray, list[Region]]:
    """The first `lines` of the DIALOGUE in one channel; who is "low" or "high"."""
    pauses_s = pauses_s or [0.7, 1.0, 1.3, 1.2, 0.9, 1.1, 0.8, 0.6]  # all longer than the VAD's join gap
    return assemble([(voice, line(voice, text)) for voice, text in DIALOGUE[:lines]], pauses_s)


def stereo_call() -> tuple[np.ndarray, list[Region]]:
    """(N, 2): the low voice's lines on the left channel, the high voice's on the right, and
    the high voice talking over the low voice's last line; who is "left" or "right"."""
    mono, regions = dialogue([0.7, 1.0, 1.3, 1.2, 0.9, 1.1, 0.8, 0.6])
    left, right = np.zeros_like(mono), np.zeros_like(mono)
    for start, end, voice in regions:
        target = left if voice == "low" else right
        a, b = int(start * SAMPLE_RATE), int(end * SAMPLE_RATE)
        target[a:b] = mono[a:b]
    overlap = line("high", "Sorry go on")
    start = int((regions[-1][0] + 0.5) * SAMPLE_RATE)
    right[start : start + len(overlap)] += overlap
    first, last = speech_bounds(overlap)
    regions.append(((start + first) / SAMPLE_RATE, (start + last) / SAMPLE_RATE, "high"))
    noise = np.random.default_rng(1).normal(0, NOISE_LEVEL, (len(mono), 2))
    stereo = np.stack([left, right], axis=1) + noise
    who = [(s, e, "left" if v == "low" else "right") for s, e, v in regions]
    return stereo.astype(np.float32), sorted(who)


def overlap_s(a: tuple[float, float], b: tuple[float, float]) -> float:
    return max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
