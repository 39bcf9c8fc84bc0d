"""Speech segments of a 16 kHz mono waveform, found with Silero VAD (weights ship in its wheel).

The detector gives a speech probability per 32 ms chunk; `speech_regions` turns that
track into segments in plain numpy: hysteresis thresholds, short gaps joined, short
blips dropped, a little padding, and speech longer than `max_segment_s` split at its
quietest chunk, so no segment exceeds the model window. torch and silero_vad are
imported on first use only.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from .audio import SAMPLE_RATE

CHUNK = 512  # samples per Silero VAD probability at 16 kHz (32 ms)
CHUNK_S = CHUNK / SAMPLE_RATE

# Defaults of the segment settings (seconds unless said otherwise).
DEFAULT_THRESHOLD = 0.5  # speech probability that starts a segment
HYSTERESIS = 0.15  # a segment ends when the probability falls below threshold - this
DEFAULT_MIN_SPEECH_S = 0.25  # shorter bursts of speech are dropped
DEFAULT_JOIN_GAP_S = 0.5  # pauses shorter than this do not end a segment
DEFAULT_MAX_SEGMENT_S = 20.0  # longer speech is split at its quietest point (model window: 30 s)
DEFAULT_PAD_S = 0.05  # added before and after each segment
SPLIT_SEARCH_FROM = 0.5  # a long segment is cut in the last (1 - this) of its first max_segment_s
ROW_S = 30.0  # a longer recording runs as a batch of rows of this many seconds (the detector is sequential)
WARM_UP_CHUNKS = 32  # each row first re-reads the 1.024 s before it, so its state has settled


@dataclass(frozen=True)
class VadSettings:
    """How speech probabilities become segments."""

    threshold: float = DEFAULT_THRESHOLD
    min_speech_s: float = DEFAULT_MIN_SPEECH_S
    join_gap_s: float = DEFAULT_JOIN_GAP_S
    max_segment_s: float = DEFAULT_MAX_SEGMENT_S
    pad_s: float = DEFAULT_PAD_S

    def __post_init__(self):
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must be between 0 and 1, not {self.threshold}")
        if self.max_segment_s < 2 * CHUNK_S or self.max_segment_s <= self.min_speech_s:
            raise ValueError(f"max_segment_s ({self.max_segment_s}) must exceed min_speech_s ({self.min_speech_s})")
        if min(self.min_speech_s, self.join_gap_s, self.pad_s) < 0:
            raise ValueError("min_speech_s, join_gap_s and pad_s must not be negative")


_model = None
_model_lock = threading.Lock()  # the detector keeps state between chunks: one caller at a time


def speech_probabilities(waveform: np.ndarray, row_s: float = ROW_S) -> np.ndarray:
    """(N,) float32 16 kHz -> (ceil(N / 512),) speech probability per 32 ms chunk.

    The detector reads one chunk after another; a recording longer than `row_s` is cut
    into rows of `row_s` run side by side as one batch, each row starting WARM_UP_CHUNKS
    early (the first after as much silence) and dropping those chunks' probabilities.
    """
    import torch

    total = -(-len(waveform) // CHUNK)
    row_chunks = max(int(row_s / CHUNK_S), 1)
    if total <= row_chunks:
        batch = np.ascontiguousarray(waveform, dtype=np.float32)[None]
        skip = 0
    else:
        rows = -(-total // row_chunks)
        skip = WARM_UP_CHUNKS
        padded = np.zeros((skip + rows * row_chunks) * CHUNK, dtype=np.float32)
        padded[skip * CHUNK : skip * CHUNK + len(waveform)] = waveform
        batch = np.stack([padded[r * row_chunks * CHUNK : ((r + 1) * row_chunks + skip) * CHUNK] for r in range(rows)])
    model = _load_model()
    with _model_lock, torch.inference_mode():
        model.reset_states()
        probs = model.audio_forward(torch.from_numpy(batch), SAMPLE_RATE)
        model.reset_states()
    return probs[:, skip:].reshape(-1)[:total].numpy().astype(np.float32)


def detect_speech(waveform: np.ndarray, settings: VadSettings | None = None) -> list[tuple[float, float]]:
    """Speech segments [(start_s, end_s), ...] of a (N,) float32 16 kHz waveform, in time order."""
    if len(waveform) < CHUNK:
        return []
    return speech_regions(speech_probabilities(waveform), waveform, settings or VadSettings())


def speech_regions(probs: np.ndarray, waveform: np.ndarray, settings: VadSettings) -> list[tuple[float, float]]:
    """Segments from a (F,) per-chunk probability track; `waveform` (N,) finds quiet split points."""
    duration_s = len(waveform) / SAMPLE_RATE
    runs = _hysteresis_runs(probs, settings.threshold, settings.threshold - HYSTERESIS)
    runs = _join_close(runs, int(round(settings.join_gap_s / CHUNK_S)))
    min_chunks = settings.min_speech_s / CHUNK_S
    runs = [(a, b) for a, b in runs if b - a >= min_chunks]
    energy = _chunk_energy(waveform, len(probs))
    max_chunks = int(settings.max_segment_s / CHUNK_S) - int(np.ceil(2 * settings.pad_s / CHUNK_S))
    pieces = [piece for run in runs for piece in _split_long(run, energy, max(max_chunks, 2))]
    segments = []
    for index, (a, b) in enumerate(pieces):
        start, end = a * CHUNK_S, min(b * CHUNK_S, duration_s)
        if index == 0 or pieces[index - 1][1] != a:  # no padding into a neighbour split off the same run
            start = max(0.0, start - settings.pad_s)
        if index == len(pieces) - 1 or pieces[index + 1][0] != b:
            end = min(duration_s, end + settings.pad_s)
        if segments and start < segments[-1][1]:  # padding never makes segments overlap
            start = segments[-1][1]
        segments.append((round(start, 3), round(end, 3)))
    return segments


def _load_model():
    """The Silero VAD TorchScript model, loaded once from the weights inside the wheel."""
    global _model
    with _model_lock:
        if _model is None:
            import torch

            threads = torch.get_num_threads()
            try:
                from silero_vad import load_silero_vad
            except ImportError as e:
                raise ImportError(
                    "Segment mode needs the silero-vad package: pip install silero-vad==6.2.3 --no-deps"
                ) from e
            finally:
                torch.set_num_threads(threads)  # importing silero_vad sets torch to one thread
            _model = load_silero_vad(onnx=False)
    return _model


def _hysteresis_runs(probs: np.ndarray, on: float, off: float) -> list[tuple[int, int]]:
    """Chunk ranges [a, b) that start above `on` and last until the probability drops below `off`."""
    runs, start = [], None
    for i, p in enumerate(probs.tolist()):
        if start is None and p >= on:
            start = i
        elif start is not None and p < off:
            runs.append((start, i))
            start = None
    if start is not None:
        runs.append((start, len(probs)))
    return runs


def _join_close(runs: list[tuple[int, int]], max_gap: int) -> list[tuple[int, int]]:
    joined: list[tuple[int, int]] = []
    for a, b in runs:
        if joined and a - joined[-1][1] < max_gap:
            joined[-1] = (joined[-1][0], b)
        else:
            joined.append((a, b))
    return joined


def _chunk_energy(waveform: np.ndarray, num_chunks: int) -> np.ndarray:
    """(num_chunks,) mean square of each 32 ms chunk (the last one zero-padded)."""
    padded = np.zeros(num_chunks * CHUNK, dtype=np.float32)
    count = min(len(waveform), len(padded))
    padded[:count] = waveform[:count]
    return np.square(padded.reshape(num_chunks, CHUNK), dtype=np.float64).mean(axis=1)


def _split_long(run: tuple[int, int], energy: np.ndarray, max_chunks: int) -> list[tuple[int, int]]:
    """Cut a run longer than `max_chunks` at its quietest chunk, again and again."""
    pieces, (a, b) = [], run
    while b - a > max_chunks:
        lo = a + max(1, int(max_chunks * SPLIT_SEARCH_FROM))
        cut = lo + int(np.argmin(energy[lo : a + max_chunks]))
        pieces.append((a, cut))
        a = cut
    pieces.append((a, b))
    return pieces
