"""The conv front end (seven strided convolutions) and feature projection, run fast on the CPU.

funasr's front end in `layer_norm` mode is, per layer: conv, transpose, layer norm over
channels, transpose, GELU. Time-major, each conv is one GEMM over windows of frames and
the layer norm needs no transposes. Each frame sees only its receptive field, so the
input can be cut into short pieces that give exactly the whole-input result while the
512-channel intermediates stay in cache. With int8, every GEMM but the first layer's
(ten taps of one channel) runs as a dynamically quantised int8 linear layer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from .kernels import Linear, in_place, int8_linear

# How much the conv front end computes at a time: (one clip or the whole batch, frames).
# On the CPU, 2 s of one clip keeps its 512-channel intermediates in cache (measured);
# a GPU wants big kernels, so it takes the whole batch, 10 s at a time, which bounds
# the intermediates to about 100 MB per clip in float32 (not yet measured on a GPU).
CONV_PIECES = {"cpu": ("clip", 100), "cuda": ("batch", 500)}


@dataclass(frozen=True)
class ConvStep:
    """One layer of the conv front end run time-major: (B, L, C_in) -> (B, L', C_out).

    The convolution is a linear layer over each window of `kernel` frames taken
    `stride` apart; `gemm` holds the conv weight (C_out, kernel * C_in) reordered to
    the window's memory order, so a window is one contiguous run of floats: an
    nn.Linear, or its int8 twin.
    """

    gemm: torch.nn.Module
    kernel: int
    stride: int
    norm: torch.nn.Module  # over channels, the last axis
    act: Callable[[torch.Tensor], torch.Tensor]  # GELU in place (`in_place`)

    def windows(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, C) -> (B, L', kernel * C): frame i's window starts at frame i * stride."""
        batch, length, channels = x.shape
        count = (length - self.kernel) // self.stride + 1
        x = x.contiguous()
        return x.as_strided((batch, count, self.kernel * channels), (length * channels, self.stride * channels, 1))


def time_major_conv_steps(encoder: torch.nn.Module) -> list[ConvStep] | None:
    """funasr's conv front end as ConvSteps, when it is in `layer_norm` mode (each layer:
    conv, dropout, transpose + layer norm over channels + transpose, GELU); else None."""
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
        gemm = torch.nn.Linear(conv.in_channels * conv.kernel_size[0], conv.out_channels, bias=conv.bias is not None)
        with torch.no_grad():
            gemm.weight.copy_(conv.weight.detach().permute(0, 2, 1).reshape(conv.out_channels, -1))
            if conv.bias is not None:
                gemm.bias.copy_(conv.bias.detach())
        steps.append(ConvStep(gemm.eval().requires_grad_(False), conv.kernel_size[0], conv.stride[0], norm[0],
                              in_place(parts[3])))
    return steps


class ConvFrontEnd:
    """(B, N) prepared waveforms -> (B, T, D) projected local features.

    `encoder` is funasr's AUDIO modality encoder; `geometry` its FrameGeometry;
    `linear(x, weight, bias)` the float32 GEMM to use; `pieces` see CONV_PIECES;
    `int8`: the GEMMs after the first layer, and the projection, as int8 linear layers.
    """

    def __init__(self, encoder: torch.nn.Module, geometry, linear: Linear, pieces: tuple[str, int], int8: bool = False):
        self.encoder = encoder
        self.geometry = geometry
        self.linear = linear
        self.pieces = pieces
        self.steps = time_major_conv_steps(encoder)
        # funasr's projection without its transpose (already time-major): layer norm, linear.
        self.projection = [m for m in encoder.project_features if isinstance(m, (torch.nn.LayerNorm, torch.nn.Linear))]
        if int8 and self.steps is not None:
            self.steps = self.steps[:1] + [replace(step, gemm=int8_linear(step.gemm)) for step in self.steps[1:]]
            self.projection = [int8_linear(layer) if isinstance(layer, torch.nn.Linear) else layer
                               for layer in self.projection]

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        """The front end on `batch` in pieces (see CONV_PIECES); a front end normalising
        over time runs on the whole input, funasr's way."""
        enc, geometry = self.encoder, self.geometry
        if self.steps is None:
            return enc.project_features(enc.local_encoder(batch))
        rows, frames = self.pieces
        total = geometry.num_frames(batch.shape[1])
        out = []
        for part in batch.split(1) if rows == "clip" else [batch]:
            pieces = []
            for first in range(0, total, frames):
                last = min(first + frames, total) - 1  # frames first..last need these samples:
                samples = part[:, first * geometry.hop : last * geometry.hop + geometry.receptive_field]
                pieces.append(self.piece(samples))
            out.append(torch.cat(pieces, dim=1) if len(pieces) > 1 else pieces[0])
        return torch.cat(out) if len(out) > 1 else out[0]

    def piece(self, samples: torch.Tensor) -> torch.Tensor:
        """(B, n) samples -> (B, T_piece, D) projected features, time-major throughout."""
        x = samples[..., None]  # (B, n, 1)
        for step in self.steps:
            x = step.act(step.norm(self.gemm(step.gemm, step.windows(x))))
        for layer in self.projection:
            if isinstance(layer, torch.nn.LayerNorm):
                x = layer(x)
            else:
                x = self.gemm(layer, x)
        return x

    def gemm(self, layer: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        """A float32 nn.Linear through `linear`; an int8 one runs itself."""
        if isinstance(layer, torch.nn.Linear):
            return self.linear(x, layer.weight, layer.bias)
        return layer(x)
