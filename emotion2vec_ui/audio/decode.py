"""Decode any supported audio input to the model's input: mono float32 at 16 kHz.

Files and bytes are decoded with PyAV (FFmpeg's libraries shipped in the wheel, so no
system ffmpeg is needed), frame by frame: each decoded frame is downmixed (channel
mean) and resampled with soxr right away, so only the 16 kHz mono result is held in
memory, and the duration limit is enforced on decoded samples, not on headers.
With `keep_channels=True` each channel is also resampled on its own and kept.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soxr

from ..errors import (
    AudioDecodeError,
    AudioFileNotFoundError,
    AudioLimitError,
    AudioReadError,
    AudioTooShortError,
    CorruptAudioError,
    EmptyAudioError,
    InvalidSamplesError,
    MonoAudioError,
    UnsupportedCodecError,
)
from .formats import ACCEPTED_FORMATS, CONTAINER_NAMES

SAMPLE_RATE = 16_000  # Hz, the model's input rate
MAX_FILE_MB = 1024.0  # default limits, for one person's own files: files up to 1 GiB ...
MAX_DURATION_S = 3 * 3600.0  # ... and 3 hours (a shared server sets its own, see settings.py)
MIN_SAMPLES = 400  # samples at 16 kHz (25 ms): the conv front end's receptive field
MIN_SOURCE_RATE = 8_000  # Hz
MAX_SOURCE_RATE = 192_000  # Hz
RESAMPLE_QUALITY = "HQ"  # soxr quality preset: no warm-up, about 1 ms per second of audio
TRUNCATION_TOLERANCE_S = 0.25  # decoded may fall this short of the declared duration
RECOMMENDED_S = (1.0, 30.0)  # seconds: the clip lengths the model does best on (longer works too)
QUIET_PEAK_DBFS = -45.0  # a clip whose loudest sample stays below this is taken as silent

ACCEPTED_INPUTS = (
    f"a path to an audio file ({ACCEPTED_FORMATS}), "
    "the file's bytes, or a numpy waveform with its sample rate as (array, rate)"
)
# Leading bytes of the containers we accept: a file that starts like one of these but
# fails to open is damaged or truncated rather than "not audio".
SIGNATURES = {
    b"RIFF": "WAV",
    b"RF64": "WAV",
    b"fLaC": "FLAC",
    b"OggS": "OGG",
    b"ID3": "MP3",
    b"\xff\xfb": "MP3",
    b"\xff\xf3": "MP3",
    b"\xff\xf2": "MP3",
    b"\x1a\x45\xdf\xa3": "WEBM/Matroska",
}
HEADER_PEEK_BYTES = 64 * 1024
# The decode buffer is sized from the header's duration up to this (65 minutes, 250 MB of address
# space, taken in memory only as it is written); longer files grow it by copying.
FIRST_BUFFER_SAMPLES = 65 * 60 * SAMPLE_RATE


@dataclass(frozen=True)
class AudioLimits:
    """Input limits: file size in bytes and decoded duration in seconds (the CLI's defaults;
    the web server passes its own, see settings.py)."""

    max_file_bytes: int = int(MAX_FILE_MB * 2**20)
    max_duration_s: float = MAX_DURATION_S


@dataclass
class Audio:
    """A decoded input: `waveform` (N,) float32 mono at 16 kHz, plus where it came from.

    `channels` is (C, N) float32 at 16 kHz, each channel on its own, only when decoded
    with `keep_channels=True` (`waveform` is still their mix).
    """

    waveform: np.ndarray
    name: str
    source_rate: int
    source_channels: int
    source_format: str
    channels: np.ndarray | None = field(default=None, repr=False)

    def channel_waveforms(self) -> np.ndarray:
        """(C, N) per-channel waveforms; raises MonoAudioError for a one-channel input."""
        if self.channels is None or len(self.channels) < 2:
            what = "has one channel" if self.source_channels < 2 else "was decoded without keep_channels=True"
            raise MonoAudioError(
                f"{self.name}: one speaker per channel needs a recording with two or more channels, "
                f"and this one {what}. Choose a stereo recording, or let speakers be found automatically."
            )
        return self.channels

    @property
    def duration_s(self) -> float:
        return len(self.waveform) / SAMPLE_RATE


def load_audio(
    source,
    sample_rate: int | None = None,
    *,
    name: str | None = None,
    limits: AudioLimits | None = None,
    keep_channels: bool = False,
) -> Audio:
    """Decode `source` (path, bytes, or numpy array with `sample_rate`) to 16 kHz mono.

    `name` is what error messages call the input (default: the path, or a generic
    description). `keep_channels` also keeps each channel: `Audio.channels` (C, N).
    Raises a subclass of `AudioError` that names the input and says what to do.
    """
    limits = limits or AudioLimits()
    if isinstance(source, tuple):
        source, sample_rate = _split_array_tuple(source)
    if isinstance(source, np.ndarray):
        if sample_rate is None:
            raise InvalidSamplesError(
                "A numpy waveform needs its sample rate: pass (array, rate) or sample_rate=."
            )
        audio = _from_array(source, int(sample_rate), name or "numpy waveform", limits, keep_channels)
    elif isinstance(source, (bytes, bytearray, memoryview)):
        name = name or "audio bytes"
        _check_size(len(source), name, limits)
        audio = _decode(io.BytesIO(bytes(source)), name, limits, keep_channels)
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        name = name or str(source)
        if path.is_dir():
            raise AudioFileNotFoundError(
                f"{name}: a folder, not an audio file. Give the audio files in it (the batch command "
                "searches a whole folder: python -m emotion2vec_ui batch FOLDER --out results.csv)."
            )
        if not path.is_file():
            raise AudioFileNotFoundError(f"{name}: no such file. Check the path.")
        _check_size(path.stat().st_size, name, limits)
        try:
            with open(path, "rb") as handle:
                audio = _decode(handle, name, limits, keep_channels)
        except OSError as e:
            raise AudioReadError(
                f"{name}: the file cannot be read ({e.strerror or e}). Check its permissions and the disk."
            ) from e
    else:
        raise AudioDecodeError(
            f"Cannot read audio from a {type(source).__name__}; pass {ACCEPTED_INPUTS}."
        )
    _check_waveform(audio)
    return audio


def _split_array_tuple(pair: tuple) -> tuple[np.ndarray, int]:
    """Accept (array, rate) and Gradio's (rate, array): exactly one ndarray and one whole number."""
    arrays = [item for item in pair if isinstance(item, np.ndarray)]
    rates = [item for item in pair if isinstance(item, (int, np.integer)) and not isinstance(item, bool)]
    if len(pair) != 2 or len(arrays) != 1 or len(rates) != 1:
        raise InvalidSamplesError(
            f"A tuple input must be (numpy_array, sample_rate) or (sample_rate, numpy_array), not a "
            f"{len(pair)}-tuple of {', '.join(type(item).__name__ for item in pair)}. "
            "Pass several files as a list to predict_batch."
        )
    return arrays[0], int(rates[0])


def _check_size(num_bytes: int, name: str, limits: AudioLimits) -> None:
    if num_bytes == 0:
        raise EmptyAudioError(f"{name}: the file is empty (0 bytes). Choose a recording with sound in it.")
    if num_bytes > limits.max_file_bytes:
        raise AudioLimitError(
            f"{name}: {num_bytes / 2**20:.1f} MB is over the {limits.max_file_bytes / 2**20:.0f} MB "
            "file size limit. Compress or split the file, or raise the limit: --max-file-mb or E2V_MAX_FILE_MB "
            "(in Python: load_model(..., limits=AudioLimits(max_file_bytes=...)))."
        )


def _check_rate(rate: int, name: str) -> None:
    if not MIN_SOURCE_RATE <= rate <= MAX_SOURCE_RATE:
        raise InvalidSamplesError(
            f"{name}: sample rate {rate} Hz is outside the supported "
            f"{MIN_SOURCE_RATE}-{MAX_SOURCE_RATE} Hz. Resample the file first."
        )


def _duration_error(name: str, limits: AudioLimits) -> AudioLimitError:
    return AudioLimitError(
        f"{name}: longer than the {limits.max_duration_s:.0f} s duration limit. "
        "Split the recording, or raise the limit: --max-duration-s or E2V_MAX_DURATION_S "
        "(in Python: load_model(..., limits=AudioLimits(max_duration_s=...)))."
    )


def _check_waveform(audio: Audio) -> None:
    if len(audio.waveform) == 0:
        raise EmptyAudioError(f"{audio.name}: decodes to no audio samples. Choose a recording with sound in it.")
    if len(audio.waveform) < MIN_SAMPLES:
        raise AudioTooShortError(
            f"{audio.name}: {audio.duration_s * 1000:.1f} ms of audio is too short; the model needs "
            f"at least {MIN_SAMPLES * 1000 / SAMPLE_RATE:.0f} ms ({MIN_SAMPLES} samples at 16 kHz)."
        )
    if not np.isfinite(audio.waveform).all():
        raise InvalidSamplesError(
            f"{audio.name}: the audio holds NaN or infinite sample values. Re-export it from its source."
        )


def _from_array(array: np.ndarray, rate: int, name: str, limits: AudioLimits, keep_channels: bool = False) -> Audio:
    """(N,) or 2-D waveform (channels on the shorter axis), int or float, to 16 kHz mono."""
    _check_rate(rate, name)
    if array.ndim not in (1, 2):
        raise InvalidSamplesError(f"{name}: expected a 1-D or 2-D waveform, got shape {array.shape}.")
    array = _int_to_float(array)
    channels = 1 if array.ndim == 1 else min(array.shape)
    kept = None
    if keep_channels:
        per_channel = array[None] if array.ndim == 1 else np.moveaxis(array, int(np.argmin(array.shape)), 0)
        kept = np.stack([_resample(np.asarray(c, dtype=np.float32), rate) for c in per_channel])
    if array.ndim == 2:
        array = array.mean(axis=int(np.argmin(array.shape)), dtype=np.float64)
    if len(array) / rate > limits.max_duration_s:
        raise _duration_error(name, limits)
    mono = _resample(np.asarray(array, dtype=np.float32), rate)
    return Audio(mono, name, rate, channels, "array", kept)


def _resample(samples: np.ndarray, rate: int) -> np.ndarray:
    """(n,) float32 at `rate` -> contiguous float32 at 16 kHz."""
    if rate != SAMPLE_RATE and len(samples):
        samples = soxr.resample(samples, rate, SAMPLE_RATE, quality=RESAMPLE_QUALITY)
    return np.ascontiguousarray(samples, dtype=np.float32)


def _int_to_float(array: np.ndarray) -> np.ndarray:
    """Scale integer PCM to [-1, 1); floats pass through."""
    if np.issubdtype(array.dtype, np.unsignedinteger):
        half = 2.0 ** (8 * array.dtype.itemsize - 1)
        return (array.astype(np.float64) - half) / half
    if np.issubdtype(array.dtype, np.integer):
        return array.astype(np.float64) / 2.0 ** (8 * array.dtype.itemsize - 1)
    if not np.issubdtype(array.dtype, np.floating):
        raise InvalidSamplesError(f"unsupported sample type {array.dtype}")
    return array


def _frame_to_mono(frame) -> np.ndarray:
    """One decoded PyAV AudioFrame -> (n,) float32 channel mean, scaled to [-1, 1)."""
    data = _frame_channels(frame)
    return data.mean(axis=0, dtype=np.float32) if len(data) > 1 else data[0].astype(np.float32)


def _frame_channels(frame) -> np.ndarray:
    """One decoded PyAV AudioFrame -> (C, n) float samples scaled to [-1, 1)."""
    data = frame.to_ndarray()
    channels = len(frame.layout.channels)
    if not frame.format.is_planar:  # packed: (1, n * C), interleaved
        data = data.reshape(-1, channels).T
    return _int_to_float(data)


def _sniff_container(head: bytes) -> str | None:
    """The container a file claims to be by its first bytes, or None."""
    if head[4:8] == b"ftyp":
        return "M4A/MP4"
    return next((kind for magic, kind in SIGNATURES.items() if head.startswith(magic)), None)


def _wav_declared_duration_s(head: bytes) -> float | None:
    """Duration stated by a RIFF/WAVE header's `fmt ` and `data` chunks, in seconds."""
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    pos, bytes_per_second, data_size = 12, None, None
    while pos + 8 <= len(head) and data_size is None:
        chunk_id, size = head[pos : pos + 4], int.from_bytes(head[pos + 4 : pos + 8], "little")
        if chunk_id == b"fmt " and pos + 16 <= len(head):
            bytes_per_second = int.from_bytes(head[pos + 16 : pos + 20], "little")
        elif chunk_id == b"data":
            data_size = size
        pos += 8 + size + (size & 1)
    if not bytes_per_second or not data_size or data_size == 0xFFFFFFFF:
        return None  # streamed WAVs leave the size unset
    return data_size / bytes_per_second


def _decode(handle, name: str, limits: AudioLimits, keep_channels: bool = False) -> Audio:
    """Stream-decode a file object with PyAV, downmixing and resampling frame by frame."""
    import av  # heavy: PyAV loads FFmpeg's libraries

    head = handle.read(HEADER_PEEK_BYTES)
    handle.seek(0)
    try:
        container = av.open(handle, mode="r", metadata_errors="ignore")
    except av.error.FFmpegError as e:
        claimed = _sniff_container(head)
        if claimed:
            raise CorruptAudioError(
                f"{name}: looks like a {claimed} file but cannot be opened: its data is damaged "
                f"or truncated ({e.strerror or e}). Re-export or re-download the file."
            ) from e
        raise AudioDecodeError(
            f"{name}: not a recognised audio file ({e.strerror or e}). "
            f"Choose a {ACCEPTED_FORMATS} file."
        ) from e
    with container:
        format_name = container.format.name.split(",")[0]
        shown = CONTAINER_NAMES.get(format_name, format_name.upper())
        streams = container.streams.audio
        if not streams:
            raise UnsupportedCodecError(
                f"{name}: the {shown} file holds no audio stream. Choose a file with sound in it."
            )
        stream = streams[0]
        if stream.codec_context is None or not stream.codec_context.codec.is_decoder:
            raise UnsupportedCodecError(
                f"{name}: its audio codec cannot be decoded here. Convert it to WAV, FLAC or MP3."
            )
        rate = stream.codec_context.sample_rate or stream.rate
        _check_rate(rate, name)
        channels = stream.codec_context.channels
        resampler = soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="float32", quality=RESAMPLE_QUALITY)
        max_source_samples = limits.max_duration_s * rate
        expected_s = container.duration / 1_000_000 if container.duration else 0.0  # AV_TIME_BASE: µs
        # The header's duration is a hint, not a promise: a tiny crafted file may claim hours. The
        # buffer is sized from it all the same (capped): pages never written take no memory, and
        # a recording of up to an hour then never needs a grown copy of its buffer.
        claimed = int(min(expected_s, limits.max_duration_s) * SAMPLE_RATE * 1.01) + SAMPLE_RATE
        output = _SampleBuffer(min(claimed, FIRST_BUFFER_SAMPLES))
        decoded = 0
        kept = _ChannelKeeper(rate, channels) if keep_channels else None
        try:
            for frame in container.decode(stream):
                if frame.sample_rate != rate:
                    raise CorruptAudioError(
                        f"{name}: the sample rate changes mid-stream ({rate} -> {frame.sample_rate} Hz). "
                        "Re-encode the file at one rate."
                    )
                mono = _frame_to_mono(frame)
                decoded += len(mono)
                if decoded > max_source_samples:
                    raise _duration_error(name, limits)
                output.append(resampler.resample_chunk(mono))
                if kept:
                    kept.append(frame)
        except av.error.DecoderNotFoundError as e:
            raise UnsupportedCodecError(
                f"{name}: no decoder for its audio codec. Convert it to WAV, FLAC or MP3."
            ) from e
        except av.error.FFmpegError as e:
            raise CorruptAudioError(
                f"{name}: the audio data is damaged or truncated ({e.strerror or e}). "
                "Re-export or re-download the file."
            ) from e
        output.append(resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True))
        declared_s = _wav_declared_duration_s(head) or _declared_duration_s(container, stream, format_name)
    if decoded == 0:
        raise EmptyAudioError(f"{name}: the {shown} file holds no audio samples. Choose a recording with sound in it.")
    decoded_s = decoded / rate
    trusted = 0.8 if format_name == "mp3" else 1.0  # see _declared_duration_s
    if declared_s and decoded_s < declared_s * trusted - TRUNCATION_TOLERANCE_S:
        raise CorruptAudioError(
            f"{name}: the file is truncated: its header promises {declared_s:.2f} s but only "
            f"{decoded_s:.2f} s of audio is there. Re-export or re-download the file."
        )
    waveform = output.samples()
    return Audio(waveform, name, rate, channels, shown, kept.finish(len(waveform)) if kept else None)


class _ChannelKeeper:
    """Each channel of a stream, resampled to 16 kHz on its own, frame by frame."""

    def __init__(self, rate: int, channels: int):
        self.resampler = soxr.ResampleStream(rate, SAMPLE_RATE, channels, dtype="float32", quality=RESAMPLE_QUALITY)
        self.channels = channels
        self.chunks: list[np.ndarray] = []  # (n, C) each

    def append(self, frame) -> None:
        samples = np.ascontiguousarray(_frame_channels(frame).T, dtype=np.float32)
        self.chunks.append(self.resampler.resample_chunk(samples))

    def finish(self, length: int) -> np.ndarray:
        """(C, length) float32: the same length as the mono mix."""
        self.chunks.append(self.resampler.resample_chunk(np.zeros((0, self.channels), dtype=np.float32), last=True))
        data = np.concatenate(self.chunks).T[:, :length]
        out = np.zeros((self.channels, length), dtype=np.float32)
        out[:, : data.shape[1]] = data
        return out


class _SampleBuffer:
    """A float32 array filled chunk by chunk, sized from the header's duration estimate (capped),
    so a long file is held once rather than as a list of chunks plus their concatenation.
    A large np.empty is mapped lazily: only the pages written take memory."""

    def __init__(self, capacity: int):
        self.data = np.empty(max(capacity, 1), dtype=np.float32)
        self.size = 0

    def append(self, chunk: np.ndarray) -> None:
        end = self.size + len(chunk)
        if end > len(self.data):  # the estimate was short: grow geometrically
            grown = np.empty(max(end, int(len(self.data) * 1.5)), dtype=np.float32)
            grown[: self.size] = self.data[: self.size]
            self.data = grown
        self.data[self.size : end] = chunk
        self.size = end

    def samples(self) -> np.ndarray:
        """The filled part; copied only when much of the buffer would go unused."""
        if self.size < 0.9 * len(self.data):
            return self.data[: self.size].copy()
        return self.data[: self.size]


def _declared_duration_s(container, stream, format_name: str) -> float | None:
    """The duration a FLAC or MP3 header states, in seconds.

    FLAC's STREAMINFO and MP3's Xing/Info header state the sample count; for MP3 without
    one FFmpeg estimates from the bitrate, so only a shortfall beyond 20 % counts there.
    Other containers' durations come from the file size and say nothing about truncation.
    """
    if format_name not in ("flac", "mp3") or stream.duration is None or stream.time_base is None:
        return None
    return float(stream.duration * stream.time_base)


def clip_warnings(waveform: np.ndarray) -> list[str]:
    """What a result may suffer from in a 16 kHz mono clip (N,): shorter than RECOMMENDED_S,
    or nearly silent (peak below QUIET_PEAK_DBFS). Empty when neither."""
    warnings = []
    seconds = len(waveform) / SAMPLE_RATE
    if seconds < RECOMMENDED_S[0]:
        warnings.append(f"音频很短 Short clip: {seconds:.2f} s, under the recommended {RECOMMENDED_S[0]:g} s; "
                        "the result may be unreliable.")
    peak = float(np.abs(waveform).max()) if len(waveform) else 0.0
    if peak < 10 ** (QUIET_PEAK_DBFS / 20):
        level = f"{20 * np.log10(peak):.0f} dBFS" if peak > 0 else "digital silence"
        warnings.append(f"几乎无声 Nearly silent: the loudest sample is {level}; the result says little.")
    return warnings
