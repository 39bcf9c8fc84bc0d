"""Shared fixtures: a tiny random-weight checkpoint built by the project, and real encoded files."""

from __future__ import annotations

import numpy as np
import pytest

from emotion2vec_ui.audio.testdata import suffix_for, voice_like, write_audio

# (format, sample rate, channels) for the real-encoder fixtures; each exercises a decoder path.
FORMAT_CASES = [
    ("wav", 16_000, 1),
    ("wav", 44_100, 2),
    ("wav_u8", 8_000, 1),
    ("wav_s24", 96_000, 2),
    ("wav_s32", 22_050, 1),
    ("wav_f32", 192_000, 1),
    ("flac", 48_000, 6),
    ("mp3", 44_100, 2),
    ("m4a", 48_000, 2),
    ("ogg", 44_100, 2),
    ("opus", 48_000, 1),
    ("webm", 48_000, 2),
]
CLIP_SECONDS = 2.0


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """A tiny random-weight checkpoint folder in the published format."""
    from emotion2vec_ui.engine.checkpoint import build_checkpoint

    return build_checkpoint(tmp_path_factory.mktemp("checkpoint") / "tiny", size="tiny", head_gain=20.0)


@pytest.fixture(scope="session")
def tiny_model(tiny_checkpoint):
    """A Recognizer on the tiny checkpoint, loaded through the same path as a real one."""
    from emotion2vec_ui import load_model

    return load_model(tiny_checkpoint, device="cpu")


@pytest.fixture(scope="session")
def audio_files(tmp_path_factory):
    """{case id: path} of 2 s voice-like clips written by real encoders (PyAV/FFmpeg)."""
    folder = tmp_path_factory.mktemp("audio")
    files = {}
    for index, (fmt, rate, channels) in enumerate(FORMAT_CASES):
        case = f"{fmt}-{rate}-{channels}ch"
        samples = voice_like(CLIP_SECONDS, rate, channels, seed=index)
        files[case] = write_audio(folder / f"clip_{case}{suffix_for(fmt)}", samples, rate, fmt)
    return files


@pytest.fixture(scope="session")
def wav_clip(tmp_path_factory):
    """A plain 3 s 16 kHz mono WAV."""
    path = tmp_path_factory.mktemp("wav") / "speech.wav"
    return write_audio(path, voice_like(3.0, 16_000, 1, seed=42), 16_000, "wav")


def random_speechlike(seconds: float, seed: int = 0) -> np.ndarray:
    """(N,) float32 16 kHz voice-like waveform."""
    return voice_like(seconds, 16_000, 1, seed=seed)[:, 0]
