"""Export a checkpoint to ONNX: the encoder and the head, plus a manifest to run them.

    python -m emotion2vec_ui export-onnx DIR [--model ...] [--int8]

writes into DIR:
- encoder.onnx: waveforms (B, N) float32 prepared 16 kHz samples, zero-padded, and
  frames (B,) int64 valid frame counts -> features (B, T, D) float32, T = the longest
  clip's frames; lengths and batch size are dynamic, padding is masked as in the torch path;
- head.onnx: features (M, D) -> logits (M, K) over the usable labels;
- emotion2vec_onnx.json: labels, frame geometry, input normalisation flag, precision, and
  `random_weights` (true for an export of a random-weight checkpoint, see checkpoint.py).

`--int8` quantises the encoder's matrix products to int8 with ONNX Runtime's dynamic
quantisation (weights per channel). The export needs torch, funasr and onnx; running
the folder (onnx_backend.py) needs only onnxruntime and numpy.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ModelLoadError, OutputWriteError
from ..outputs.folders import check_new_or_empty
from .backend import ONNX_MANIFEST as MANIFEST
from .backend import RANDOM_WEIGHTS_KEY
from .encoder import TransformerEncoder
from .kernels import layer_linear
from .torch_backend import load_backend

ENCODER_FILE = "encoder.onnx"
HEAD_FILE = "head.onnx"
OPSET = 17  # LayerNormalization is a single op from opset 17
FORMAT_VERSION = 1
TARGET = ("the export", "an earlier export")  # for check_new_or_empty


class _EncoderGraph(torch.nn.Module):
    """What encoder.onnx computes: funasr's conv front end, then the masked transformer."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net
        # Plain F.linear and a bias built in the graph from the input's length.
        self.transformer = TransformerEncoder(net, layer_linear(F.linear), torch.float32, cache_bias=False)

    def forward(self, waveforms: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        enc = self.net.modality_encoders["AUDIO"]
        local = enc.project_features(enc.local_encoder(waveforms))  # (B, T, D)
        return self.transformer(local, frames, always_mask=True)


def export_onnx(folder: str | os.PathLike, model: str | None = None, hub: str | None = None,
                int8: bool = False) -> Path:
    """Write encoder.onnx, head.onnx and the manifest for `model` into `folder`; returns it.

    `folder` must be new or empty (OutputWriteError otherwise: nothing is overwritten). The
    files are written into a hidden folder beside it and renamed into place when all are
    done, so a failed export leaves no partial folder.
    """
    folder = Path(folder).expanduser()
    check_new_or_empty(folder, *TARGET)
    if model is not None and (Path(model).expanduser() / MANIFEST).is_file():
        raise ModelLoadError(f"{model} is already an exported ONNX folder; export-onnx reads a checkpoint "
                             "(a model folder or hub id) given with --model.")
    backend = load_backend(model, hub, device="cpu", precision="fp32", lanes=1)
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = folder.parent / f".{folder.name}.partial-{secrets.token_hex(4)}"
        staging.mkdir()  # the usual permissions (a temporary folder's would be owner-only)
    except OSError as e:
        raise OutputWriteError(f"cannot create {folder}: {e.strerror or e}.") from e
    try:
        _write_export(backend, staging, int8)
        check_new_or_empty(folder, *TARGET)  # still new or empty after the minutes the export took
        if folder.is_dir():
            folder.rmdir()
        staging.rename(folder)
    except OutputWriteError:
        raise
    except OSError as e:
        raise OutputWriteError(f"cannot write the export to {folder}: {e.strerror or e}.") from e
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def _write_export(backend, folder: Path, int8: bool) -> None:
    """The export's three files into the existing folder `folder`."""
    geometry = backend.geometry
    example_frames = 60  # any length: the axes are dynamic
    samples = (example_frames - 1) * geometry.hop + geometry.receptive_field
    waveforms = torch.randn(2, samples)
    frames = torch.tensor([example_frames, example_frames // 2])
    graph = _EncoderGraph(backend.net).eval()
    with tempfile.TemporaryDirectory(prefix="e2v-onnx-") as scratch:
        fp32_path = Path(scratch) / ENCODER_FILE if int8 else folder / ENCODER_FILE
        _trace_to_onnx(graph, (waveforms, frames), fp32_path, ["waveforms", "frames"], ["features"],
                       {"waveforms": {0: "batch", 1: "samples"}, "frames": {0: "batch"},
                        "features": {0: "batch", 1: "num_frames"}})
        if int8:
            from onnxruntime.quantization import QuantType, quantize_dynamic  # heavy: --int8 only

            # 7-bit weights (reduce_range): without VNNI, ONNX Runtime's AVX2 kernel adds pairs
            # of uint8 x int8 products in int16, which saturates with full-range weights (on an
            # AVX2-only CPU: embedding cosine 0.9915 and top emotion changed on 1 of 16 clips,
            # against 0.99987 and none with 7 bits, at the same speed).
            with _quiet_root_logger():  # it logs a pre-processing hint through the root logger
                quantize_dynamic(str(fp32_path), str(folder / ENCODER_FILE), weight_type=QuantType.QInt8,
                                 per_channel=True, reduce_range=True, op_types_to_quantize=["MatMul", "Gemm"])
    _export_head(backend, folder / HEAD_FILE)
    manifest = {
        "format": FORMAT_VERSION,
        "name": backend.name,
        "labels": backend.labels,
        "conv_layers": [list(layer) for layer in geometry.conv_layers],
        "normalize": backend.normalize_input,
        "embed_dim": backend.embed_dim,
        "precision": "int8" if int8 else "fp32",
        "encoder": ENCODER_FILE,
        "head": HEAD_FILE,
        "opset": OPSET,
        "torch": torch.__version__,
        RANDOM_WEIGHTS_KEY: backend.random_weights,
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def _export_head(backend, path: Path) -> None:
    """head.onnx: the classification head over the usable labels, (M, D) -> (M, K), float32."""
    head = torch.nn.Linear(backend.embed_dim, len(backend.labels))
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(np.ascontiguousarray(backend.head_weight)))
        head.bias.copy_(torch.from_numpy(backend.head_bias))
    _trace_to_onnx(head.eval(), (torch.zeros(1, backend.embed_dim),), path, ["features"], ["logits"],
                   {"features": {0: "rows"}, "logits": {0: "rows"}})


def _trace_to_onnx(module, args: tuple, path: Path, inputs: list[str], outputs: list[str], axes: dict) -> None:
    """torch's TorchScript exporter (a traced graph: the forward has no data-dependent branch)."""
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        # Its deprecation notice, and tracer notes about sizes used as Python values.
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, str(path), dynamo=False, opset_version=OPSET,
                          input_names=inputs, output_names=outputs, dynamic_axes=axes)


@contextlib.contextmanager
def _quiet_root_logger():
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)
