"""Run an exported folder (see onnx_export.py) on ONNX Runtime: no torch, no funasr.

Implements the backend interface the pipeline uses (backend_common.BackendBase):
`encode` runs encoder.onnx on a zero-padded batch with each clip's frame count,
`logits` runs head.onnx. Needs only `onnxruntime` and numpy at run time.

Lanes (CPU, opt-in): each lane is a thread with an encoder session on its share of the
cores. Lanes of one thread share one session (one copy of the weights): a one-thread session
runs each call on its caller's thread, so the calls still run side by side. Lanes of more
threads have a session each (two calls on one session would share its threads).
"""

from __future__ import annotations

import json
import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelLoadError
from .backend import ONNX_MANIFEST as MANIFEST
from .backend import RANDOM_WEIGHTS_KEY, BackendBase, FrameGeometry, check_lanes, cpu_threads, device_kind
from .hub import cli_command

FORMAT_VERSION = 1
# Manifest fields and how each is read (a malformed value raises TypeError or ValueError).
MANIFEST_FIELDS = {
    "name": str,
    "labels": lambda labels: [str(label) for label in labels],
    "conv_layers": lambda layers: tuple((int(kernel), int(stride)) for kernel, stride in layers),
    "normalize": bool,
    "embed_dim": int,
    "precision": str,
    "encoder": str,
    "head": str,
}
OPTIONAL_FIELDS = {RANDOM_WEIGHTS_KEY: (bool, False)}  # absent in earlier exports: (how it is read, default)
PROVIDERS = {"cpu": ["CPUExecutionProvider"], "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"]}


class OnnxBackend(BackendBase):
    """An exported emotion2vec folder on ONNX Runtime; safe to call from several threads
    (ONNX Runtime's `run` is). `lanes` > 1 (CPU): that many lane threads, each running the
    encoder on `threads // lanes` threads, on one more session (one thread each) or one
    session per lane (see the module's docstring)."""

    def __init__(self, folder: Path, device: str = "cpu", threads: int | None = None, lanes: int | None = None):
        try:
            import onnxruntime as ort  # heavy: an optional extra
        except ImportError as e:
            raise ModelLoadError(
                "the onnx backend needs ONNX Runtime: pip install onnxruntime==1.31.1 (or onnxruntime-gpu)."
            ) from e
        manifest = _read_manifest(folder)
        kind = device_kind(device)
        if kind == "cuda" and "CUDAExecutionProvider" not in ort.get_available_providers():
            raise ModelLoadError(f"device {device!r}: this ONNX Runtime has no CUDA provider; "
                                 "install onnxruntime-gpu or use --device cpu.")
        threads = threads or cpu_threads()
        self.lanes = check_lanes(lanes, device, threads, default=1)

        def session(graph: str, session_threads: int):
            options = ort.SessionOptions()
            options.intra_op_num_threads = session_threads
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            try:
                return ort.InferenceSession(str(folder / manifest[graph]), options, providers=PROVIDERS[kind])
            except Exception as e:  # ONNX Runtime raises its own error family for unreadable graphs
                raise ModelLoadError(f"{folder}: ONNX Runtime cannot load the exported model ({e}). "
                                     f"Export it again with {cli_command('export-onnx')}.") from e

        self.session = session("encoder", threads)
        self.head = session("head", threads)
        lane_threads = threads // self.lanes
        if self.lanes == 1:
            self._lane_sessions = []
        elif lane_threads == 1:  # one session for every lane (see the module's docstring)
            self._lane_sessions = [session("encoder", 1)] * self.lanes
        else:
            self._lane_sessions = [session("encoder", lane_threads) for _ in range(self.lanes)]
        self._lane = threading.local()  # .session: the lane thread's encoder session
        self._pool = None
        if self._lane_sessions:
            free = queue.SimpleQueue()  # each lane thread takes one session as it starts
            for lane_session in self._lane_sessions:
                free.put(lane_session)
            self._pool = ThreadPoolExecutor(self.lanes, thread_name_prefix="e2v-onnx-lane",
                                            initializer=lambda: setattr(self._lane, "session", free.get_nowait()))
        self.name = manifest["name"]
        self.device = device
        self.precision = manifest["precision"]
        self.labels = manifest["labels"]
        self.geometry = FrameGeometry(manifest["conv_layers"])
        self.normalize_input = manifest["normalize"]
        self._embed_dim = manifest["embed_dim"]
        self.random_weights = manifest[RANDOM_WEIGHTS_KEY]

    @property
    def embed_dim(self) -> int:
        return self._embed_dim

    def encode(self, waveforms: list[np.ndarray]) -> list[np.ndarray]:
        """Frame features (T_i, D) float32 of prepared 16 kHz waveforms (N_i,), as one padded batch."""
        lengths = [len(w) for w in waveforms]
        self.check_lengths(lengths)
        batch = np.zeros((len(waveforms), max(lengths)), dtype=np.float32)
        for row, wav in enumerate(waveforms):
            batch[row, : len(wav)] = wav
        frames = np.array([self.geometry.num_frames(n) for n in lengths], dtype=np.int64)
        session = getattr(self._lane, "session", self.session)  # a lane's own, or the one on every core
        (features,) = session.run(["features"], {"waveforms": batch, "frames": frames})
        return [features[row, :count] for row, count in enumerate(frames)]

    def run_in_lane(self, work: Callable[..., Any], *args) -> Future:
        """Start `work(*args)` in the next free lane, whose `encode` runs on the lane's session."""
        if self._pool is None:
            return super().run_in_lane(work, *args)
        return self._pool.submit(work, *args)

    def lane_threads(self) -> list[int]:
        """ONNX Runtime's thread count of each lane's session (for the tests)."""
        return [s.get_session_options().intra_op_num_threads for s in self._lane_sessions]

    def logits(self, features: np.ndarray) -> np.ndarray:
        """Head logits over the usable labels: (..., D) -> (..., K), float32."""
        features = np.asarray(features, dtype=np.float32)
        rows = features.reshape(-1, features.shape[-1])
        (logits,) = self.head.run(["logits"], {"features": rows})
        return logits.reshape(*features.shape[:-1], logits.shape[-1])


def load_onnx_backend(folder: str | os.PathLike | None, device: str | None = None,
                      lanes: int | None = None) -> OnnxBackend:
    """The exported folder `folder` on ONNX Runtime (`device` "cpu", the default, or "cuda"),
    with `lanes` encoder sessions side by side (CPU; default 1)."""
    if folder is None or not Path(folder).expanduser().is_dir():
        shown = "no model was given" if folder is None else f"{str(folder)!r} is not a folder"
        raise ModelLoadError(f"the onnx backend needs as its model a folder written by {cli_command('export-onnx DIR')} "
                             f"(--model DIR, E2V_MODEL, or load_model's first argument); {shown}.")
    return OnnxBackend(Path(folder).expanduser(), device or "cpu", lanes=lanes)


def _read_manifest(folder: Path) -> dict:
    path = folder / MANIFEST
    if not path.is_file():
        raise ModelLoadError(f"{folder} holds no {MANIFEST}: it is not an exported ONNX folder. "
                             f"Write one with {cli_command('export-onnx DIR --model CHECKPOINT')}.")
    again = f"Export the model again with {cli_command('export-onnx DIR --model CHECKPOINT')}."
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelLoadError(f"{path} cannot be read as JSON ({e}). {again}") from e
    if not isinstance(manifest, dict):
        raise ModelLoadError(f"{path} is not an export manifest (a JSON object). {again}")
    if manifest.get("format") != FORMAT_VERSION:
        raise ModelLoadError(f"{path}: format {manifest.get('format')!r}, this version reads {FORMAT_VERSION}. {again}")
    missing = [key for key in MANIFEST_FIELDS if key not in manifest]
    if missing:
        raise ModelLoadError(f"{path} lacks {', '.join(missing)}. {again}")
    try:
        fields = {key: parse(manifest[key]) for key, parse in MANIFEST_FIELDS.items()}
        fields |= {key: parse(manifest.get(key, default)) for key, (parse, default) in OPTIONAL_FIELDS.items()}
    except (TypeError, ValueError) as e:
        raise ModelLoadError(f"{path} has a malformed field ({e}). {again}") from e
    return fields
