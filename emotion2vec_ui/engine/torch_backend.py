"""The checkpoint: loaded and verified through funasr once, run as a batched forward pass.

This is the one module that imports funasr, and it contains its quirks: funasr's
import-time prints, its root-logging set-up and update check, its download errors that
are printed and swallowed, and its loader that keeps random weights for missing or
mis-shaped keys (checked here after loading).

`Emotion2vecBackend` is the facade the pipeline uses; the compute lives in
conv_frontend.py (the conv front end, time-major GEMMs in short pieces),
encoder.py (padding-masked transformer with ALiBi attention) and kernels.py (which
GEMM runs the linear layers on this CPU, and the int8 option).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import CheckpointMismatchError, ModelLoadError
from ..results import token_to_key, usable_label_indices
from .backend import (  # noqa: F401
    MAX_WINDOW_S,
    ONNX_MANIFEST,
    BackendBase,
    FrameGeometry,
    check_lanes,
    check_window,
    cpu_threads,
    device_kind,
    marked_random_weights,
)
from .conv_frontend import CONV_PIECES, ConvFrontEnd
from .encoder import TransformerEncoder
from .hub import DEFAULT_MODEL, HUBS, cached_model_folder, require_hub
from .kernels import layer_linear, pick_linear, pick_time_major_conv, quantize_linears_int8
from .lanes import CpuLanes

CHECKPOINT_FILES = ("config.yaml", "model.pt")
# The released checkpoints omit the pre-training decoder; no other weight may be missing.
OPTIONAL_WEIGHT_PREFIXES = ("modality_encoders.AUDIO.decoder.",)
# Precision options: the dtype matmuls run in. "int8": the linear layers of the transformer
# and of the conv front end (all but its first layer) as dynamically quantised int8 (CPU
# only); attention, the positional convolutions and the norms stay float32.
PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16, "int8": torch.qint8}


def pick_device(device: str | None = None) -> str:
    """`device`, else "cuda" when torch sees a GPU, else "cpu"."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device_kind(device) == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(
            f"device {device!r} was asked for but this torch build sees no CUDA GPU. "
            "Use --device cpu (E2V_DEVICE=cpu, or load_model(..., device=\"cpu\")), or install a CUDA build of torch."
        )
    return device


class Emotion2vecBackend(BackendBase):
    """A loaded emotion2vec checkpoint on one device: the facade the pipeline uses.

    `encode` maps 16 kHz waveforms to frame features (T, D) through the conv front end
    (conv_frontend.py) and the transformer encoder (encoder.py); `logits` applies the
    classification head to features (..., D) -> (..., K) over the usable labels.
    With `lanes` > 1, `run_in_lane` runs work (batches) side by side on CPU lanes
    (lanes.py), each on `cpu_threads() // lanes` threads. Safe to call from several threads
    at once.
    """

    def __init__(self, net: torch.nn.Module, tokens: list[str], name: str, device: str, precision: str = "fp32",
                 lanes: int = 1, random_weights: bool = False):
        self.net = net.eval()
        self.random_weights = random_weights
        self.name = name
        self.device = device
        self.precision = precision
        self.encoder = net.modality_encoders["AUDIO"]
        self.normalize_input = bool(net.cfg.get("normalize", False))
        self.geometry = FrameGeometry(tuple((k, s) for _, k, s in self.encoder.feature_enc_layers))
        keep = usable_label_indices(tokens)
        self.labels = [token_to_key(tokens[i]) for i in keep]
        if net.proj is None:
            raise ModelLoadError(f"{name}: the checkpoint has no classification head (proj); it only embeds.")
        # The head stays float32 on the CPU in numpy: cheap, and exact for every precision.
        self.head_weight = net.proj.weight.detach().float().cpu().numpy()[keep]  # (K, D)
        self.head_bias = net.proj.bias.detach().float().cpu().numpy()[keep]  # (K,)
        # int8 quantises the linear layers (see PRECISIONS); the rest runs in float32.
        self.dtype = torch.float32 if precision == "int8" else PRECISIONS[precision]
        self.linear = pick_linear(device, self.dtype)
        blocks = [*self.encoder.context_encoder.blocks, *net.blocks]
        block_linear = quantize_linears_int8(blocks) if precision == "int8" else layer_linear(self.linear)
        self.front_end = ConvFrontEnd(self.encoder, self.geometry, self.linear,
                                      CONV_PIECES[device_kind(device)],
                                      int8=precision == "int8")
        position_conv = next(m for m in self.encoder.relative_positional_encoder.modules()
                             if isinstance(m, torch.nn.Conv1d))
        self.transformer = TransformerEncoder(net, block_linear, self.dtype,
                                              conv=pick_time_major_conv(device, self.dtype, position_conv))
        self.lanes = lanes
        self._cpu_lanes = CpuLanes(lanes, max(1, cpu_threads() // lanes)) if lanes > 1 else None

    @property
    def blocks(self) -> list[torch.nn.Module]:
        """The transformer blocks, in order."""
        return self.transformer.blocks

    @torch.inference_mode()
    def encode(self, waveforms: list[np.ndarray]) -> list[np.ndarray]:
        """Frame features of prepared 16 kHz waveforms, run as one padded batch.

        Each waveform (N_i,) needs N_i >= receptive_field and at most MAX_WINDOW_S
        seconds (WindowTooLongError); returns (T_i, D) float32 arrays.
        """
        lengths = [len(w) for w in waveforms]
        self.check_lengths(lengths)
        batch = torch.zeros(len(waveforms), max(lengths), dtype=torch.float32)
        for row, wav in enumerate(waveforms):
            batch[row, : len(wav)] = torch.from_numpy(np.asarray(wav, dtype=np.float32))
        frames = [self.geometry.num_frames(n) for n in lengths]
        # Reduced precision runs matmuls and convolutions in bf16/fp16 under autocast;
        # weights, norms and softmax stay float32.
        reduced = self.dtype != torch.float32
        with torch.autocast(device_type=torch.device(self.device).type, dtype=self.dtype, enabled=reduced):
            features = self._forward(batch.to(self.device), torch.tensor(frames, device=self.device))
        features = features.float().cpu().numpy()
        return [features[row, :count] for row, count in enumerate(frames)]

    def run_in_lane(self, work: Callable[..., Any], *args) -> Future:
        """Start `work(*args)` in the next free CPU lane (lanes > 1 only)."""
        if self._cpu_lanes is None:
            return super().run_in_lane(work, *args)
        return self._cpu_lanes.submit(work, *args)

    def _forward(self, batch: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """(B, N) waveforms -> (B, T, D) features; frames (B,) counts the valid ones."""
        return self.transformer(self._local_features(batch), frames)

    def _local_features(self, batch: torch.Tensor) -> torch.Tensor:
        """(B, N) waveforms -> (B, T, D) projected conv features."""
        return self.front_end(batch)


# ---------------------------------------------------------------------------------------
# Loading


def load_backend(
    model: str | os.PathLike | None = None,
    hub: str | None = None,
    device: str | None = None,
    precision: str = "fp32",
    lanes: int | None = None,
) -> Emotion2vecBackend:
    """Build a checkpoint through funasr from a hub id or a local folder, verified.

    `model` defaults to the ModelScope id of emotion2vec+ large; `hub` to "ms" ("hf" for
    Hugging Face); `device` see `pick_device`; `lanes` the batches run side by side on
    the CPU (default: 2 where there are 2 cores or more; 1 on a GPU).
    Raises ModelLoadError (or CheckpointMismatchError) with what to do.
    """
    model = str(model or DEFAULT_MODEL)
    hub = (hub or "ms").lower()
    if hub not in HUBS:
        raise ModelLoadError(f"unknown hub {hub!r}; use one of {', '.join(HUBS)}.")
    if precision not in PRECISIONS:
        raise ModelLoadError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}.")
    device = pick_device(device)
    if precision == "int8" and device_kind(device) != "cpu":
        raise ModelLoadError(f"precision int8 runs on the CPU only; on {device} use fp16 or bf16, or --device cpu.")
    threads = cpu_threads()
    lanes = check_lanes(lanes, device, threads)
    folder = resolve_model_folder(model, hub)
    with contained_funasr():
        from funasr import AutoModel  # heavy: funasr imports its model zoo

        try:
            auto = AutoModel(
                model=str(folder), hub=hub, device=device, ncpu=threads,
                disable_update=True, disable_pbar=True, disable_log=True, log_level="ERROR",
            )
        except Exception as e:  # funasr raises bare RuntimeError/KeyError/AssertionError here
            raise ModelLoadError(f"{model}: funasr could not build the checkpoint in {folder}: {e}") from e
    torch.set_num_threads(threads)
    net = auto.model
    verify_weights(net, folder / "model.pt", auto.kwargs.get("scope_map") or [])
    tokens = list(auto.kwargs["tokenizer"].token_list)
    # Results name the checkpoint by hub id, or by folder name: never a server path.
    name = Path(model).expanduser().name if Path(model).expanduser().is_dir() else model
    return Emotion2vecBackend(net, tokens, name=name, device=device, precision=precision, lanes=lanes,
                              random_weights=marked_random_weights(folder))


def resolve_model_folder(model: str, hub: str) -> Path:
    """A local folder as is; a hub id downloaded (or found in the cache) by funasr's helper."""
    path = Path(model).expanduser()
    if path.is_dir():
        missing = [name for name in CHECKPOINT_FILES if not (path / name).is_file()]
        if missing:
            onnx_hint = (" This folder was written by export-onnx: run it with --backend onnx (E2V_BACKEND=onnx, "
                         'or load_model(..., backend="onnx")).' if (path / ONNX_MANIFEST).is_file() else "")
            raise ModelLoadError(
                f"model folder {path} lacks {', '.join(missing)}. A checkpoint folder holds "
                f"config.yaml, tokens.txt, configuration.json and model.pt.{onnx_hint}"
            )
        return path
    if path.exists() or model.startswith((".", "/", "~")) or model.count("/") != 1:
        raise ModelLoadError(
            f"{model!r} is neither a model folder nor a hub id like {DEFAULT_MODEL!r}. "
            "Give --model (E2V_MODEL, or load_model's first argument) a folder holding config.yaml and model.pt, "
            "or a hub id."
        )
    with contained_funasr():
        from funasr.download import download_model_from_hub as funasr_hub  # heavy: as above

        cached = cached_model_folder(model, hub)  # a downloaded model loads offline
        if cached is not None:
            return resolve_model_folder(str(cached), hub)
        require_hub(model, hub, hub_cache_dir(hub))  # no internet: fail fast, say what to do
        try:
            if hub == "hf":
                folder = funasr_hub.get_or_download_model_dir_hf(model, "main")
            else:
                folder = funasr_hub.get_or_download_model_dir(model, "master")
        except Exception as e:  # the hub clients raise their own error families
            raise ModelLoadError(
                f"could not download {model!r} from {HUBS[hub]} (cache folder: {hub_cache_dir(hub)}): "
                f"{type(e).__name__}: {_first_line(e)}. Check the internet connection, or download the "
                "model folder on another machine and give its path as --model (E2V_MODEL, or load_model's first "
                "argument)."
            ) from e
    return resolve_model_folder(str(folder), hub)


def hub_cache_dir(hub: str) -> Path:
    """Where the hub client keeps downloaded models."""
    if hub == "hf":
        home = os.environ.get("HF_HOME", "~/.cache/huggingface")
        return Path(os.environ.get("HF_HUB_CACHE", Path(home) / "hub")).expanduser()
    return Path(os.environ.get("MODELSCOPE_CACHE", "~/.cache/modelscope/hub")).expanduser()


def verify_weights(net: torch.nn.Module, checkpoint: Path, scope_map: list[str]) -> None:
    """Fail unless every encoder and head weight of `net` came from `checkpoint`.

    funasr maps checkpoint keys through `scope_map` (pairs of source prefix, target
    prefix; "none" = empty) and silently keeps random weights for missing or mis-shaped
    keys. Only the pre-training decoder may be absent.
    """
    try:
        source = torch.load(checkpoint, map_location="cpu", mmap=True, weights_only=True)
    except Exception as e:  # torch raises RuntimeError/UnpicklingError for bad files
        raise ModelLoadError(f"{checkpoint}: not a readable torch checkpoint ({_first_line(e)}).") from e
    for key in ("state_dict", "model_state_dict", "model"):
        source = source.get(key, source) if isinstance(source, dict) else source
    prefixes = [""] + [p for p, target in zip(scope_map[::2], scope_map[1::2]) if str(target).lower() == "none"]
    prefixes += ["module."]
    missing, mismatched = [], []
    for key, value in net.state_dict().items():
        if key.startswith(OPTIONAL_WEIGHT_PREFIXES):
            continue
        found = next((source[p + key] for p in prefixes if p + key in source), None)
        if found is None:
            missing.append(key)
        elif found.shape != value.shape or not torch.equal(found.to(value.dtype), value.cpu()):
            mismatched.append(f"{key} {tuple(found.shape)} vs {tuple(value.shape)}")
    if missing or mismatched:
        problems = [f"{len(missing)} missing (e.g. {', '.join(missing[:3])})"] if missing else []
        problems += [f"{len(mismatched)} not loaded (e.g. {'; '.join(mismatched[:3])})"] if mismatched else []
        raise CheckpointMismatchError(
            f"{checkpoint}: the weights do not fit the model its config.yaml describes: "
            f"{' and '.join(problems)}. funasr would run with random weights there. "
            "Re-download the model folder, or use the config.yaml that came with model.pt."
        )


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [""])[0][:300]


@contextlib.contextmanager
def contained_funasr():
    """Silence funasr's prints, INFO logs and import warnings; undo its logging.basicConfig."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    logging.disable(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(logging.NOTSET)
        root.handlers[:] = handlers
        root.setLevel(level)
