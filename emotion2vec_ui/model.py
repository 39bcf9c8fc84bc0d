"""The checkpoint: loaded through funasr once, run as a batched forward pass.

This is the one module that imports torch and funasr, and it contains their quirks:
funasr's import-time prints, its root-logging set-up and update check, its download
errors that are printed and swallowed, and its loader that keeps random weights for
missing or mis-shaped keys (checked here after loading).

The forward pass uses the funasr module's own weights and norms but takes a padded
batch: frames past a clip's end are zeroed before and between the positional
convolutions and masked out of attention, so each clip's features equal its
one-at-a-time result. For speed on the CPU, the conv front end runs time-major as one
GEMM per layer over short pieces, and float32 linear layers go through oneDNN.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .errors import CheckpointMismatchError, ModelLoadError
from .results import token_to_key, usable_label_indices
from .settings import DEFAULT_MODEL, HUBS

CHECKPOINT_FILES = ("config.yaml", "model.pt")
# The released checkpoints omit the pre-training decoder; no other weight may be missing.
OPTIONAL_WEIGHT_PREFIXES = ("modality_encoders.AUDIO.decoder.",)
PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
LAYER_NORM_EPS = 1e-5  # F.layer_norm's default, used by funasr's input normalisation
NORMALIZE_CHUNK = 1 << 20  # samples summed at a time when computing input statistics
# How much the conv front end computes at a time: (one clip or the whole batch, frames).
# On the CPU, 2 s of one clip keeps its 512-channel intermediates in cache (measured);
# a GPU wants big kernels, so it takes the whole batch, 10 s at a time, which bounds
# the intermediates to about 100 MB per clip in float32 (not yet measured on a GPU).
CONV_PIECES = {"cpu": ("clip", 100), "cuda": ("batch", 500)}


def pick_device(device: str | None = None) -> str:
    """`device`, else "cuda" when torch sees a GPU, else "cpu"."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError(
            f"device {device!r} was asked for but this torch build sees no CUDA GPU. "
            "Use --device cpu (or E2V_DEVICE=cpu), or install a CUDA build of torch."
        )
    return device


def cpu_threads() -> int:
    """The cores this process may use (funasr's default of 4 oversubscribes a 2-core machine)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


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


class Emotion2vecBackend:
    """A loaded emotion2vec checkpoint on one device.

    `encode` maps 16 kHz waveforms to frame features (T, D); `logits` applies the
    classification head to features (..., D) -> (..., K) over the usable labels.
    """

    def __init__(self, net: torch.nn.Module, tokens: list[str], name: str, device: str, precision: str = "fp32"):
        self.net = net.eval()
        self.name = name
        self.device = device
        self.precision = precision
        self.dtype = PRECISIONS[precision]
        self.encoder = net.modality_encoders["AUDIO"]
        self.blocks = [*self.encoder.context_encoder.blocks, *net.blocks]  # transformer blocks, in order
        self.heads = self.blocks[0].attn.num_heads
        self.normalize_input = bool(net.cfg.get("normalize", False))
        self.geometry = FrameGeometry(tuple((k, s) for _, k, s in self.encoder.feature_enc_layers))
        keep = usable_label_indices(tokens)
        self.labels = [token_to_key(tokens[i]) for i in keep]
        if net.proj is None:
            raise ModelLoadError(f"{name}: the checkpoint has no classification head (proj); it only embeds.")
        # The head stays float32 on the CPU in numpy: cheap, and exact for every precision.
        self.head_weight = net.proj.weight.detach().float().cpu().numpy()[keep]  # (K, D)
        self.head_bias = net.proj.bias.detach().float().cpu().numpy()[keep]  # (K,)
        self.embed_dim = int(self.head_weight.shape[1])
        self._alibi_cache: torch.Tensor | None = None  # see _alibi_bias
        self.linear = pick_linear(device, self.dtype)
        self.conv_steps = time_major_conv_steps(self.encoder)
        self.conv_pieces = CONV_PIECES["cuda" if torch.device(device).type == "cuda" else "cpu"]

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

    @torch.inference_mode()
    def encode(self, waveforms: list[np.ndarray]) -> list[np.ndarray]:
        """Frame features of prepared 16 kHz waveforms, run as one padded batch.

        Each waveform (N_i,) needs N_i >= receptive_field; returns (T_i, D) float32 arrays.
        """
        lengths = [len(w) for w in waveforms]
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

    def _forward(self, batch: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """(B, N) waveforms -> (B, T, D) features; frames (B,) counts the valid ones."""
        enc, cfg = self.encoder, self.encoder.modality_cfg
        x = self._local_features(batch)  # (B, T, D)
        num_frames = x.shape[1]
        padding = torch.arange(num_frames, device=x.device)[None, :] >= frames[:, None]  # (B, T)
        padded = bool(padding.any())
        if padded:
            x = x.masked_fill(padding[..., None], 0)
        x = x + self._positions(x, padding if padded else None)

        scale = enc.alibi_scale.clamp_min(0).float()
        per_layer = scale.size(0) > 1  # else the one scale is already in the cached bias
        alibi = self._alibi_bias(num_frames + cfg.num_extra_tokens, x.device)  # (1, H, T', T')
        extra = cfg.num_extra_tokens
        if enc.extra_tokens is not None:
            x = torch.cat([enc.extra_tokens.expand(x.size(0), -1, -1), x], dim=1)
            padding = F.pad(padding, (extra, 0))
        # Padded keys get -inf: (B, 1, 1, T') broadcast over heads and queries.
        key_mask = torch.zeros((), device=x.device)
        if padded:
            key_mask = torch.zeros(padding.shape, device=x.device).masked_fill(padding, float("-inf"))[:, None, None]
        # The bias in the dtype attention runs in (autocast's, under reduced precision), once.
        shared_bias = None if per_layer else (alibi + key_mask if padded else alibi).to(self.dtype)

        context = enc.context_encoder
        if context.norm is not None and not context.layer_norm_first:
            x = context.norm(x)
        for i, block in enumerate(self.blocks):
            x = self._block(block, x, (alibi * scale[i] + key_mask).to(self.dtype) if per_layer else shared_bias)
            if i == len(context.blocks) - 1 and context.norm is not None and context.layer_norm_first:
                x = context.norm(x)
        if self.net.norm is not None:
            x = self.net.norm(x)
        return x[:, extra:]

    def _block(self, block, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """funasr's AltBlock in eval mode, with fused attention; bias (B|1, H, T, T) in the
        attention's dtype."""
        attn, linear = block.attn, self.linear
        batch, length, dim = x.shape
        source = block.norm1(x) if block.layer_norm_first else x
        qkv = linear(source, attn.qkv.weight, attn.qkv.bias)
        q, k, v = qkv.reshape(batch, length, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=attn.scale)
        x = x + linear(y.transpose(1, 2).reshape(batch, length, dim), attn.proj.weight, attn.proj.bias)
        if block.layer_norm_first:  # as in funasr: the MLP output is added to itself
            mlp = self._mlp(block.mlp, block.norm2(x))
            return mlp + mlp
        residual = block.norm1(x)
        return block.norm2(residual + self._mlp(block.mlp, residual))

    def _mlp(self, mlp, x: torch.Tensor) -> torch.Tensor:
        """funasr's (timm's) Mlp in eval mode: fc1, activation, norm, fc2 (dropouts are off)."""
        hidden = mlp.norm(mlp.act(self.linear(x, mlp.fc1.weight, mlp.fc1.bias)))
        return self.linear(hidden, mlp.fc2.weight, mlp.fc2.bias)

    def _alibi_bias(self, length: int, device) -> torch.Tensor:
        """funasr's ALiBi attention bias for `length` tokens (extra tokens first, unbiased),
        scaled unless the scale is per layer, zero for heads past the ALiBi ones:
        (1, H, length, length) float32.

        The bias depends only on token distance, so one bias for the longest input seen
        is kept and sliced, instead of rebuilding a 146 MB tensor for every 30 s window.
        """
        cached = self._alibi_cache
        if cached is None or cached.shape[-1] < length or cached.device != torch.device(device):
            enc, cfg = self.encoder, self.encoder.modality_cfg
            extra = cfg.num_extra_tokens
            bias = enc.get_alibi_bias(
                batch_size=1, time_steps=length - extra, heads=cfg.num_alibi_heads, dtype=torch.float32, device=device
            )
            scale = enc.alibi_scale.clamp_min(0).float()
            if scale.size(0) == 1:
                bias = bias * scale.squeeze(0)
            unbiased_heads = self.heads - bias.size(1)  # ALiBi may cover only the first heads
            self._alibi_cache = cached = F.pad(bias, (extra, 0, extra, 0, 0, unbiased_heads))
        return cached[:, :, :length, :length]

    def _local_features(self, batch: torch.Tensor) -> torch.Tensor:
        """The conv front end and feature projection, (B, N) -> (B, T, D), in pieces
        (see CONV_PIECES).

        Each frame sees only its own receptive field, so the pieces give exactly the
        whole-input result; small pieces keep the intermediates in cache instead of
        allocating and touching hundreds of MB.
        """
        enc, geometry = self.encoder, self.geometry
        if self.conv_steps is None:  # a front end normalising over time: whole input, funasr's way
            return enc.project_features(enc.local_encoder(batch))
        rows, frames = self.conv_pieces
        total = geometry.num_frames(batch.shape[1])
        out = []
        for part in batch.split(1) if rows == "clip" else [batch]:
            pieces = []
            for first in range(0, total, frames):
                last = min(first + frames, total) - 1  # frames first..last need these samples:
                samples = part[:, first * geometry.hop : last * geometry.hop + geometry.receptive_field]
                pieces.append(self._conv_piece(samples))
            out.append(torch.cat(pieces, dim=1) if len(pieces) > 1 else pieces[0])
        return torch.cat(out) if len(out) > 1 else out[0]

    def _conv_piece(self, samples: torch.Tensor) -> torch.Tensor:
        """(B, n) samples -> (B, T_piece, D) projected features, time-major throughout."""
        x = samples[..., None]  # (B, n, 1)
        for step in self.conv_steps:
            x = step.act(step.norm(self.linear(step.windows(x), step.weight, step.bias)))
        for layer in self.encoder.project_features:  # layer norm, linear (already time-major)
            if isinstance(layer, torch.nn.Linear):
                x = self.linear(x, layer.weight, layer.bias)
            elif isinstance(layer, torch.nn.LayerNorm):
                x = layer(x)
        return x

    def _positions(self, x: torch.Tensor, padding: torch.Tensor | None) -> torch.Tensor:
        """The grouped positional convolutions, re-zeroing padded frames after each layer.

        One clip alone is zero-padded at its end by every conv layer; zeroing the batch's
        padding between layers gives each clip exactly that.
        """
        encoder = self.encoder.relative_positional_encoder
        if self.encoder.modality_cfg.conv_pos_pre_ln:
            pre_norm, encoder = encoder[0], encoder[1]
            x = pre_norm(x)
        y = x.transpose(1, 2)  # (B, D, T); the encoder's first and last children transpose
        for layer in list(encoder)[1:-1]:
            y = layer(y)
            if padding is not None:
                y = y.masked_fill(padding[:, None, :], 0)
        return y.transpose(1, 2)


Linear = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]


@dataclass(frozen=True)
class ConvStep:
    """One layer of the conv front end run time-major: (B, L, C_in) -> (B, L', C_out).

    The convolution is a linear layer over each window of `kernel` frames taken
    `stride` apart; `weight` (C_out, kernel * C_in) is the conv weight reordered to
    the window's memory order, so a window is one contiguous run of floats.
    """

    weight: torch.Tensor
    bias: torch.Tensor | None
    kernel: int
    stride: int
    norm: torch.nn.Module  # over channels, the last axis
    act: torch.nn.Module

    def windows(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, C) -> (B, L', kernel * C): frame i's window starts at frame i * stride."""
        batch, length, channels = x.shape
        count = (length - self.kernel) // self.stride + 1
        x = x.contiguous()
        return x.as_strided((batch, count, self.kernel * channels), (length * channels, self.stride * channels, 1))


def time_major_conv_steps(encoder: torch.nn.Module) -> list[ConvStep] | None:
    """funasr's conv front end as ConvSteps, when it is in `layer_norm` mode (each layer:
    conv, dropout, transpose + layer norm over channels + transpose, GELU); else None.

    Time-major, the channel layer norm needs no transposes and every conv is one GEMM.
    """
    steps = []
    for layer in encoder.local_encoder.conv_layers:
        parts = list(layer)
        if len(parts) != 4 or not isinstance(parts[0], torch.nn.Conv1d):
            return None
        if not isinstance(parts[2], torch.nn.Sequential):  # group norm over time, or no norm
            return None
        conv, norm = parts[0], [m for m in parts[2] if isinstance(m, torch.nn.LayerNorm)]
        if len(norm) != 1 or conv.groups != 1 or conv.dilation[0] != 1 or conv.padding[0] != 0:
            return None
        weight = conv.weight.detach().permute(0, 2, 1).reshape(conv.out_channels, -1).contiguous()
        bias = None if conv.bias is None else conv.bias.detach()
        steps.append(ConvStep(weight, bias, conv.kernel_size[0], conv.stride[0], norm[0], parts[3]))
    return steps


def pick_linear(device: str, dtype: torch.dtype) -> Linear:
    """How the model's linear layers run: `linear(x, weight, bias)`.

    In float32 on the CPU, oneDNN's inner product: torch's default float32 matmul goes
    through MKL, which uses AVX-512 only on Intel processors (measured on a 2-core AMD
    EPYC: 410 vs 190 GFLOP/s for the model's layer sizes). It is still float32 with
    float32 accumulation; only the summation order differs. Elsewhere (CUDA, or under
    autocast) torch's own `F.linear`, also when this torch build lacks the oneDNN op.
    """
    if torch.device(device).type != "cpu" or dtype != torch.float32 or not torch.backends.mkldnn.is_available():
        return F.linear

    def onednn_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")

    x, weight, bias = torch.randn(2, 3, 64), torch.randn(32, 64), torch.randn(32)
    try:
        with torch.inference_mode():
            agrees = torch.allclose(onednn_linear(x, weight, bias), F.linear(x, weight, bias), rtol=1e-4, atol=1e-5)
    except (AttributeError, RuntimeError):  # op missing or unsupported on this build
        return F.linear
    return onednn_linear if agrees else F.linear


# ---------------------------------------------------------------------------------------
# Loading


def load_backend(
    model: str | os.PathLike | None = None,
    hub: str | None = None,
    device: str | None = None,
    precision: str = "fp32",
) -> Emotion2vecBackend:
    """Build a checkpoint through funasr from a hub id or a local folder, verified.

    `model` defaults to the ModelScope id of emotion2vec+ large; `hub` to "ms" ("hf" for
    Hugging Face); `device` see `pick_device`.
    Raises ModelLoadError (or CheckpointMismatchError) with what to do.
    """
    model = str(model or DEFAULT_MODEL)
    hub = (hub or "ms").lower()
    if hub not in HUBS:
        raise ModelLoadError(f"unknown hub {hub!r}; use one of {', '.join(HUBS)}.")
    if precision not in PRECISIONS:
        raise ModelLoadError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}.")
    device = pick_device(device)
    folder = resolve_model_folder(model, hub)
    threads = cpu_threads()
    with contained_funasr():
        from funasr import AutoModel

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
    return Emotion2vecBackend(net, tokens, name=name, device=device, precision=precision)


def resolve_model_folder(model: str, hub: str) -> Path:
    """A local folder as is; a hub id downloaded (or found in the cache) by funasr's helper."""
    path = Path(model).expanduser()
    if path.is_dir():
        missing = [name for name in CHECKPOINT_FILES if not (path / name).is_file()]
        if missing:
            raise ModelLoadError(
                f"model folder {path} lacks {', '.join(missing)}. A checkpoint folder holds "
                "config.yaml, tokens.txt, configuration.json and model.pt."
            )
        return path
    if path.exists() or model.startswith((".", "/", "~")) or model.count("/") != 1:
        raise ModelLoadError(
            f"{model!r} is neither a model folder nor a hub id like {DEFAULT_MODEL!r}. "
            "Set E2V_MODEL (or --model) to a folder holding config.yaml and model.pt, or to a hub id."
        )
    with contained_funasr():
        from funasr.download import download_model_from_hub as funasr_hub

        try:
            if hub == "hf":
                folder = funasr_hub.get_or_download_model_dir_hf(model, "main")
            else:
                folder = funasr_hub.get_or_download_model_dir(model, "master")
        except Exception as e:  # the hub clients raise their own error families
            raise ModelLoadError(
                f"could not download {model!r} from {HUBS[hub]} (cache folder: {hub_cache_dir(hub)}): "
                f"{type(e).__name__}: {_first_line(e)}. Check the internet connection, or download the "
                "model folder on another machine and point E2V_MODEL (or --model) at it."
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
