"""Synthetic voice-like signals written with real encoders (PyAV/FFmpeg), for tests and benchmarks.

`write_audio` encodes a waveform in any format the app accepts; `voice_like` makes a
deterministic signal with a gliding pitch, harmonics and syllable-like bursts, so
files carry sound that changes over time rather than a bare tone. `speak` makes real
synthetic speech with the espeak-ng program (Debian package espeak-ng).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np

from .decode import load_audio

# format name -> (container, codec, sample format, options)
ENCODINGS = {
    "wav": ("wav", "pcm_s16le", "s16", {}),
    "wav_u8": ("wav", "pcm_u8", "u8", {}),
    "wav_s24": ("wav", "pcm_s24le", "s32", {}),
    "wav_s32": ("wav", "pcm_s32le", "s32", {}),
    "wav_f32": ("wav", "pcm_f32le", "flt", {}),
    "flac": ("flac", "flac", "s16", {}),
    "mp3": ("mp3", "libmp3lame", "fltp", {}),
    "m4a": ("ipod", "aac", "fltp", {}),
    "ogg": ("ogg", "vorbis", "fltp", {"strict": "experimental"}),
    "opus": ("ogg", "libopus", "flt", {}),
    "webm": ("webm", "libopus", "flt", {}),
}
SUFFIXES = {"wav_u8": ".wav", "wav_s24": ".wav", "wav_s32": ".wav", "wav_f32": ".wav", "opus": ".opus"}
OPUS_RATES = (8_000, 12_000, 16_000, 24_000, 48_000)
# Two clearly different espeak-ng voices: (voice, pitch 0-99, words per minute).
VOICES = {"low": ("en-us+m3", 25, 150), "high": ("en-us+f4", 90, 175)}
SILENCE_FLOOR = 1e-3  # |sample| below this counts as silence in `speech_bounds`


def suffix_for(fmt: str) -> str:
    """File name ending for an ENCODINGS key: "m4a" -> ".m4a", "wav_s24" -> ".wav"."""
    return SUFFIXES.get(fmt, "." + fmt)


def voice_like(duration_s: float, rate: int = 16_000, channels: int = 1, seed: int = 0) -> np.ndarray:
    """A (N, channels) float32 signal in [-0.5, 0.5]: harmonic voice with bursts and noise."""
    rng = np.random.default_rng(seed)
    n = int(round(duration_s * rate))
    t = np.arange(n) / rate
    pitch = 140 + 40 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6)) + rng.uniform(-30, 30)
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    voice = sum(np.sin(k * phase) / k for k in range(1, 8))
    syllables = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(2.5, 5.0) * t) ** 2
    signal = voice * syllables + 0.05 * rng.standard_normal(n)
    signal = 0.5 * signal / max(np.abs(signal).max(), 1e-9)
    out = np.stack([signal * (1 - 0.2 * c) for c in range(channels)], axis=1)
    return out.astype(np.float32)


def write_audio(path: str | Path, samples: np.ndarray, rate: int, fmt: str = "wav") -> Path:
    """Encode (N, C) float samples in [-1, 1] at `rate` Hz as `fmt` (a key of ENCODINGS)."""
    import av  # heavy: PyAV loads FFmpeg's libraries

    container_name, codec, sample_format, options = ENCODINGS[fmt]
    if codec == "libopus" and rate not in OPUS_RATES:
        raise ValueError(f"Opus encodes only at {OPUS_RATES} Hz, not {rate}")
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim == 1:
        samples = samples[:, None]
    if codec == "vorbis" and samples.shape[1] != 2:  # FFmpeg's Vorbis encoder is stereo-only
        samples = np.repeat(samples.mean(axis=1, keepdims=True), 2, axis=1)
    channels = samples.shape[1]
    path = Path(path)
    with av.open(str(path), mode="w", format=container_name) as container:
        stream = container.add_stream(codec, rate=rate, options=options)
        stream.codec_context.layout = {1: "mono", 2: "stereo"}.get(channels, f"{channels}c")
        stream.codec_context.format = sample_format
        stream.codec_context.time_base = Fraction(1, rate)
        frame_size = stream.codec_context.frame_size or 1024
        pts = 0
        for start in range(0, len(samples), frame_size):
            block = samples[start : start + frame_size]
            frame = av.AudioFrame.from_ndarray(_to_format(block, sample_format), format=sample_format,
                                               layout=stream.codec_context.layout.name)
            frame.sample_rate = rate
            frame.pts = pts
            frame.time_base = Fraction(1, rate)
            pts += len(block)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def _to_format(block: np.ndarray, sample_format: str) -> np.ndarray:
    """(n, C) float -> the array layout PyAV expects for `sample_format`."""
    clipped = np.clip(block, -1.0, 1.0 - 1e-9)
    if sample_format == "s16":
        data = (clipped * 32768).astype(np.int16)
    elif sample_format == "s32":
        data = (clipped * 2**31).astype(np.int32)
    elif sample_format == "u8":
        data = (clipped * 128 + 128).astype(np.uint8)
    else:
        data = clipped.astype(np.float32)
    if sample_format.endswith("p"):  # planar: (C, n)
        return np.ascontiguousarray(data.T)
    return data.reshape(1, -1)  # packed: (1, n * C), interleaved


def speak(text: str, voice: str = "low") -> np.ndarray:
    """`text` spoken by an espeak-ng voice (a key of VOICES): (N,) float32 at 16 kHz."""

    program = shutil.which("espeak-ng")
    if program is None:
        raise RuntimeError("espeak-ng is not installed: apt-get install -y espeak-ng")
    name, pitch, speed = VOICES[voice]
    with tempfile.TemporaryDirectory() as folder:  # a file, since --stdout leaves the WAV size unset
        path = Path(folder) / "speech.wav"
        subprocess.run([program, "-v", name, "-p", str(pitch), "-s", str(speed), "-w", str(path), text],
                       check=True, capture_output=True)
        return load_audio(path, name=f"espeak-ng {name}").waveform


def speech_bounds(waveform: np.ndarray) -> tuple[int, int]:
    """[first, last) sample above SILENCE_FLOOR: where a clean recording's sound is."""
    loud = np.flatnonzero(np.abs(waveform) > SILENCE_FLOOR)
    return (int(loud[0]), int(loud[-1]) + 1) if len(loud) else (0, 0)
