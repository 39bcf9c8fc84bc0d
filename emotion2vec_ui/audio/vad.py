"""Speech segments of a 16 kHz mono waveform, found with Silero VAD (weights ship in its wheel).

The detector gives a speech probability per 32 ms chunk (computed here from the
packaged model's weights, vectorised); `speech_regions` turns that track into segments
in plain numpy: hysteresis thresholds, short gaps joined, short blips dropped, a
little padding, and speech longer than `max_segment_s` split at its quietest chunk, so
no segment exceeds the model window. torch is imported on first use only.
"""

from __future__ import annotations

import importlib.util
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .decode import SAMPLE_RATE

VAD_THRESHOLD = 0.5  # speech probability that starts a segment
VAD_MIN_SPEECH_S = 0.25  # shorter bursts of speech are dropped
VAD_JOIN_GAP_S = 0.5  # pauses shorter than this do not end a segment
VAD_MAX_SEGMENT_S = 20.0  # longer speech is split at its quietest point
CHUNK = 512  # samples per Silero VAD probability at 16 kHz (32 ms)
CHUNK_S = CHUNK / SAMPLE_RATE

# Defaults of the segment settings (seconds unless said otherwise).
HYSTERESIS = 0.15  # a segment ends when the probability falls below threshold - this
DEFAULT_PAD_S = 0.05  # added before and after each segment
SPLIT_SEARCH_FROM = 0.5  # a long segment is cut in the last (1 - this) of its first max_segment_s

# Silero VAD's 16 kHz network (silero-vad 6.2.3, data/silero_vad.jit)
SILERO_FILE = "silero_vad.jit"
CONTEXT = 64  # samples of the previous chunk each chunk is read with
STFT_HOP = 128  # samples
CONV_STRIDES = (1, 2, 2, 1)  # the four encoder convolutions (kernel 3, padding 1)
LSTM_SIZE = 128
FRONT_END_BATCH = 4096  # chunks per batch of the convolutional front end (about 2 min of audio)


@dataclass(frozen=True)
class VadSettings:
    """How speech probabilities become segments."""

    threshold: float = VAD_THRESHOLD
    min_speech_s: float = VAD_MIN_SPEECH_S
    join_gap_s: float = VAD_JOIN_GAP_S
    max_segment_s: float = VAD_MAX_SEGMENT_S
    pad_s: float = DEFAULT_PAD_S

    def __post_init__(self):
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must be between 0 and 1, not {self.threshold}")
        if self.max_segment_s < 2 * CHUNK_S or self.max_segment_s <= self.min_speech_s:
            raise ValueError(f"max_segment_s ({self.max_segment_s}) must exceed min_speech_s ({self.min_speech_s})")
        if min(self.min_speech_s, self.join_gap_s, self.pad_s) < 0:
            raise ValueError("min_speech_s, join_gap_s and pad_s must not be negative")


_weights = None
_weights_lock = threading.Lock()


def speech_probabilities(waveform: np.ndarray) -> np.ndarray:
    """(N,) float32 16 kHz -> (ceil(N / 512),) speech probability per 32 ms chunk.

    Silero VAD's own network with its own weights, computed in two passes rather than
    chunk by chunk: the convolutional front end of every chunk (its 512 samples after
    the previous chunk's last 64) in batches, then the LSTM over the whole sequence at
    once. The probabilities are those of the packaged model's `audio_forward`.
    """
    import torch  # heavy: torch loads with the first segment-mode file
    import torch.nn.functional as F  # heavy: as above

    weights = _load_weights()
    count = -(-len(waveform) // CHUNK)
    padded = np.zeros(CONTEXT + count * CHUNK, dtype=np.float32)
    padded[CONTEXT : CONTEXT + len(waveform)] = waveform
    samples = torch.from_numpy(padded)
    offsets = torch.arange(CONTEXT + CHUNK)
    features = []
    with torch.inference_mode():
        for first in range(0, count, FRONT_END_BATCH):
            starts = torch.arange(first, min(first + FRONT_END_BATCH, count))[:, None] * CHUNK
            x = F.pad(samples[starts + offsets][:, None], (0, CONTEXT), mode="reflect")  # (b, 1, 640)
            x = F.conv1d(x, weights["stft"], stride=STFT_HOP)  # (b, 2 * bins, 4): real and imaginary parts
            bins = x.shape[1] // 2
            x = torch.sqrt(x[:, :bins] ** 2 + x[:, bins:] ** 2)
            for i, stride in enumerate(CONV_STRIDES):
                x = F.relu(F.conv1d(x, weights[f"conv{i}.weight"], weights[f"conv{i}.bias"], stride=stride, padding=1))
            features.append(x[:, :, 0])  # (b, 128)
        hidden, _ = weights["lstm"](torch.cat(features)[None])  # (1, count, 128)
        logits = F.conv1d(F.relu(hidden[0]).T[None], weights["out.weight"], weights["out.bias"])
    return torch.sigmoid(logits)[0, 0].numpy().astype(np.float32)


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


def _load_weights() -> dict:
    """The 16 kHz network's tensors from the TorchScript file inside the silero-vad wheel, read once.

    The file is only read, never run, and the package itself is not imported: its import
    sets torch to one thread for the whole process.
    """
    global _weights
    with _weights_lock:
        if _weights is None:
            import torch  # heavy: torch loads with the first segment-mode file

            spec = importlib.util.find_spec("silero_vad")
            if spec is None or not spec.submodule_search_locations:
                raise ImportError("Segment mode needs the silero-vad package: pip install silero-vad==6.2.3")
            path = Path(spec.submodule_search_locations[0]) / "data" / SILERO_FILE
            with warnings.catch_warnings():  # torch marks TorchScript loading deprecated; only tensors are read
                warnings.simplefilter("ignore", DeprecationWarning)
                state = torch.jit.load(str(path), map_location="cpu")._model.state_dict()
            _weights = {"stft": state["stft.forward_basis_buffer"],
                        "out.weight": state["decoder.decoder.2.weight"], "out.bias": state["decoder.decoder.2.bias"]}
            for i in range(len(CONV_STRIDES)):
                for kind in ("weight", "bias"):
                    _weights[f"conv{i}.{kind}"] = state[f"encoder.{i}.reparam_conv.{kind}"]
            lstm = torch.nn.LSTM(LSTM_SIZE, LSTM_SIZE, batch_first=True)
            lstm.load_state_dict({f"{kind}_l0": state[f"decoder.rnn.{kind}"]
                                  for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")})
            _weights["lstm"] = lstm.eval()
    return _weights


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
