"""What every backend shares, without torch: frame geometry, input normalisation, the head.

The torch backend (model.py) and the ONNX Runtime backend (onnx_backend.py) both
subclass `BackendBase`; the pipeline uses only this small interface: `geometry`,
`labels`, `name`, `device`, `precision`, `lanes`, `input_normalization`, `prepare`,
`encode`, `run_in_lane` and `logits`; `random_weights` says whether the checkpoint was
built with random weights (see `marked_random_weights`).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..audio.decode import SAMPLE_RATE
from ..errors import ModelLoadError, WindowTooLongError

PRECISIONS = ("fp32", "bf16", "fp16", "int8")  # int8: dynamically quantised transformer linears (CPU)
BACKENDS = ("torch", "onnx")  # onnx: a folder written by `export-onnx`, run on ONNX Runtime
MAX_WINDOW_S = 60.0  # seconds: the attention bias grows with the square of the window
MIN_WINDOW_S = 5.0  # seconds: a window must exceed twice the 2 s context
DEVICE_PATTERN = r"cpu|cuda(:\d+)?"  # the devices this app runs on
ONNX_MANIFEST = "emotion2vec_onnx.json"  # what export-onnx writes beside encoder.onnx and head.onnx
CONFIGURATION_FILE = "configuration.json"  # a checkpoint folder's hub metadata (funasr reads its file_path_metas)
RANDOM_WEIGHTS_KEY = "random_weights"  # true in the configuration.json (or manifest) of a random-weight checkpoint
RANDOM_WEIGHTS_NOTE_KEY = "random_weights_note"  # beside it: what that means, for people reading the file
LAYER_NORM_EPS = 1e-5  # F.layer_norm's default, used by funasr's input normalisation
NORMALIZE_CHUNK = 1 << 20  # samples summed at a time when computing input statistics
# MAX_WINDOW_S: the longest window (seconds) the model may see at once. Attention memory grows
# with the square of the window: the ALiBi bias alone is heads x frames^2 floats (16 x 1500^2
# x 4 B = 146 MB at 30 s, 580 MB at 60 s, 14 GB at 300 s). Longer audio is cut into windows.
# It and the user's choices of precision and backend are defined in settings.py.


def cpu_threads() -> int:
    """The threads to compute with: the cores this process may use, at most
    OMP_NUM_THREADS where that is set to a whole number (as Ray sets it to an actor's
    CPUs, so actors sharing a machine do not each take every core)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    cap = os.environ.get("OMP_NUM_THREADS", "").strip()
    return min(cores, int(cap)) if cap.isdigit() and int(cap) > 0 else cores


def check_lanes(lanes: int | None, device: str, threads: int, default: int | None = None) -> int:
    """The lanes to run: `lanes`, or `default` (None: 2 on a CPU with `threads` >= 2 threads
    to compute with, else 1); ModelLoadError for a count that cannot run on `device`."""
    on_cpu = device_kind(device) == "cpu"
    if lanes is None:
        return default if default is not None else (2 if on_cpu and threads >= 2 else 1)
    if isinstance(lanes, bool) or not isinstance(lanes, int) or lanes < 1:
        raise ModelLoadError(f"lanes={lanes!r}: use a whole number of at least 1.")
    if lanes > 1 and not on_cpu:
        raise ModelLoadError(f"lanes={lanes} applies to the CPU; on {device} a batch uses the whole GPU (lanes=1).")
    if lanes > threads:
        raise ModelLoadError(f"lanes={lanes} is more than the {threads} threads this process may use (its cores, "
                             f"at most OMP_NUM_THREADS where set); use at most {threads}.")
    return lanes


@dataclass(frozen=True)
class FrameGeometry:
    """How the conv front end maps samples to frames (plus_large: hop 320, field 400)."""

    conv_layers: tuple[tuple[int, int], ...]  # (kernel, stride) per layer

    @property
    def hop(self) -> int:
        """Samples between frames."""
        return int(np.prod([stride for _, stride in self.conv_layers]))

    @property
    def receptive_field(self) -> int:
        """Samples one frame sees; also the shortest input giving one frame."""
        field, jump = 1, 1
        for kernel, stride in self.conv_layers:
            field += (kernel - 1) * jump
            jump *= stride
        return field

    def num_frames(self, num_samples: int) -> int:
        """Frames out of `num_samples` samples (plus_large: floor((N - 400) / 320) + 1)."""
        length = num_samples
        for kernel, stride in self.conv_layers:
            length = (length - kernel) // stride + 1
        return max(length, 0)

    @property
    def max_frames(self) -> int:
        """Frames in the longest window a backend accepts (MAX_WINDOW_S)."""
        return int(MAX_WINDOW_S * SAMPLE_RATE) // self.hop


def marked_random_weights(folder: str | os.PathLike | None) -> bool:
    """Whether `folder` holds a checkpoint built with random weights (build-checkpoint), or an
    ONNX export of one: `"random_weights": true` in its configuration.json or export manifest.

    A hub id, a missing folder or an unreadable file count as not marked (a downloaded model).
    """
    if folder is None:
        return False
    path = Path(folder).expanduser()
    for name in (CONFIGURATION_FILE, ONNX_MANIFEST):
        try:
            data = json.loads((path / name).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            continue
        if isinstance(data, dict) and data.get(RANDOM_WEIGHTS_KEY) is True:
            return True
    return False


def check_device(text: str) -> str:
    """"cpu", "cuda" or "cuda:N" as given; ValueError otherwise (the one parser of a device string)."""
    if not re.fullmatch(DEVICE_PATTERN, text):
        raise ValueError("must be cpu, cuda or cuda:N (a GPU's index)")
    return text


def device_kind(device) -> str:
    """"cuda" for "cuda" / "cuda:N" (a str or torch.device), else "cpu"."""
    return "cuda" if str(device).startswith("cuda") else "cpu"


def check_window(window_s: float) -> None:
    """Raise WindowTooLongError unless 0 < `window_s` <= MAX_WINDOW_S seconds."""
    if not window_s <= MAX_WINDOW_S:
        raise WindowTooLongError(
            f"window_s={window_s} is over the longest window of {MAX_WINDOW_S:g} s: attention memory "
            f"grows with its square. Use a window of at most {MAX_WINDOW_S:g} s (default 30); longer "
            "audio is cut into windows anyway."
        )


class BackendBase:
    """The head (float32 numpy) and input normalisation every backend shares.

    Subclasses set `name`, `device`, `precision`, `geometry`, `labels`,
    `normalize_input`, `head_weight` (K, D), `head_bias` (K,), `random_weights` when the
    checkpoint is marked so, and implement `encode`.
    """

    name: str
    device: str
    precision: str
    geometry: FrameGeometry
    labels: list[str]
    normalize_input: bool
    head_weight: np.ndarray
    head_bias: np.ndarray
    lanes: int = 1  # batches that may run side by side, each through `run_in_lane`
    random_weights: bool = False  # a checkpoint built with random weights: its emotions are meaningless

    @property
    def embed_dim(self) -> int:
        return int(self.head_weight.shape[1])

    def logits(self, features: np.ndarray) -> np.ndarray:
        """Head logits over the usable labels: (..., D) -> (..., K), float32."""
        return np.asarray(features, dtype=np.float32) @ self.head_weight.T + self.head_bias

    def input_normalization(self, waveform: np.ndarray) -> tuple[float, float]:
        """(shift, scale) of the checkpoint's input normalisation over a whole waveform.

        `normalize: true` in config.yaml means zero mean and unit variance over the whole
        input (funasr: F.layer_norm(wav, wav.shape), eps 1e-5). A long input is normalised
        with its global statistics window by window, so no normalised copy is kept.
        """
        if not self.normalize_input:
            return 0.0, 1.0
        total, squares = 0.0, 0.0
        for start in range(0, len(waveform), NORMALIZE_CHUNK):  # float64 sums without a float64 copy
            chunk = waveform[start : start + NORMALIZE_CHUNK].astype(np.float64)
            total += chunk.sum()
            squares += np.dot(chunk, chunk)
        mean = total / len(waveform)
        variance = max(squares / len(waveform) - mean * mean, 0.0)
        return mean, 1.0 / np.sqrt(variance + LAYER_NORM_EPS)

    def prepare(self, waveform: np.ndarray, normalization: tuple[float, float] | None = None) -> np.ndarray:
        """The model input for `waveform` (N,): normalised with its own (or given) statistics."""
        shift, scale = normalization or self.input_normalization(waveform)
        return (np.asarray(waveform, dtype=np.float32) - np.float32(shift)) * np.float32(scale)

    def encode(self, waveforms: list[np.ndarray]) -> list[np.ndarray]:
        """Frame features (T_i, D) float32 of prepared 16 kHz waveforms (N_i,), as one batch."""
        raise NotImplementedError

    def run_in_lane(self, work: Callable[..., Any], *args) -> Future:
        """Start `work(*args)` in a free lane; only backends with `lanes` > 1 have lanes."""
        raise NotImplementedError(f"{type(self).__name__} runs one batch at a time (lanes=1)")

    def check_lengths(self, lengths: list[int]) -> None:
        """Refuse inputs longer than the longest window (see MAX_WINDOW_S)."""
        longest = max(lengths)
        if self.geometry.num_frames(longest) > self.geometry.max_frames:
            raise WindowTooLongError(
                f"an input of {longest / SAMPLE_RATE:.1f} s is over the longest window the model runs at once "
                f"({MAX_WINDOW_S:g} s); cut it into windows (the Recognizer does this)."
            )
