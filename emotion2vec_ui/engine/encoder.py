"""The transformer encoder: positional convolutions, ALiBi attention blocks, final norm.

It takes a padded batch of local features (B, T, D) with each clip's frame count and
uses funasr's own weights and norms: frames past a clip's end are zeroed before and
between the positional convolutions and masked out of attention, so each clip's
features equal its one-at-a-time result. Linear layers run through `layer_linear`
(oneDNN or MKL float32, fbgemm int8, or plain F.linear for export).

Safe to call from several threads at once: the only state that changes is the cached
ALiBi bias, replaced under a lock.
"""

from __future__ import annotations

import threading

import torch
import torch.nn.functional as F

from .kernels import LayerLinear, TimeMajorConv, conv_channels_last, in_place


class TransformerEncoder:
    """funasr's context encoder and blocks in eval mode: (B, T, D) -> (B, T, D).

    `net` is funasr's Emotion2vec module; `dtype` the dtype attention runs in (autocast's
    under reduced precision); `cache_bias` keeps one ALiBi bias for the longest input seen
    (off for export, where the bias is built in the graph from the input's length);
    `conv` runs the positional convolutions on time-major input (kernels.pick_time_major_conv).
    """

    def __init__(self, net: torch.nn.Module, layer_linear: LayerLinear, dtype: torch.dtype, cache_bias: bool = True,
                 conv: TimeMajorConv = conv_channels_last):
        self.net = net
        self.encoder = net.modality_encoders["AUDIO"]
        self.blocks = [*self.encoder.context_encoder.blocks, *net.blocks]  # transformer blocks, in order
        self.heads = self.blocks[0].attn.num_heads
        self.linear = layer_linear
        self.dtype = dtype
        self.conv = conv
        self.cache_bias = cache_bias
        self.slopes = alibi_slopes(self.encoder)  # (H_alibi,) or None without ALiBi
        self._bias_cache: torch.Tensor | None = None
        self._bias_lock = threading.Lock()

    def __call__(self, x: torch.Tensor, frames: torch.Tensor, always_mask: bool = False) -> torch.Tensor:
        """(B, T, D) local features, frames (B,) valid counts -> (B, T, D) features.

        Without padding the masks are skipped unless `always_mask` (export: one graph for
        every batch)."""
        enc, cfg = self.encoder, self.encoder.modality_cfg
        num_frames = x.shape[1]
        padding = torch.arange(num_frames, device=x.device)[None, :] >= frames[:, None]  # (B, T)
        padded = always_mask or bool(padding.any())
        if padded:
            x = x.masked_fill(padding[..., None], 0)
        x = x + self.positions(x, padding if padded else None)

        extra = cfg.num_extra_tokens
        scale = enc.alibi_scale.clamp_min(0).float()
        per_layer = scale.size(0) > 1  # else the one scale is already in the bias
        alibi = self.alibi_bias(num_frames + extra, x.device)  # (1, H, T', T')
        if enc.extra_tokens is not None:
            x = torch.cat([enc.extra_tokens.expand(x.size(0), -1, -1), x], dim=1)
            padding = F.pad(padding, (extra, 0))
        # Padded keys get -inf: (B, 1, 1, T') broadcast over heads and queries.
        key_mask = torch.zeros((), device=x.device)
        if padded:
            key_mask = torch.zeros(padding.shape, device=x.device).masked_fill(padding, float("-inf"))[:, None, None]
        # The bias in the dtype attention runs in, built once for all blocks.
        shared_bias = None if per_layer else (alibi + key_mask if padded else alibi).to(self.dtype)

        context = enc.context_encoder
        if context.norm is not None and not context.layer_norm_first:
            x = context.norm(x)
        for i, block in enumerate(self.blocks):
            x = self.block(block, x, (alibi * scale[i] + key_mask).to(self.dtype) if per_layer else shared_bias)
            if i == len(context.blocks) - 1 and context.norm is not None and context.layer_norm_first:
                x = context.norm(x)
        if self.net.norm is not None:
            x = self.net.norm(x)
        return x[:, extra:]

    def block(self, block, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """funasr's AltBlock in eval mode, with fused attention; bias (B|1, H, T, T)."""
        attn, linear = block.attn, self.linear
        batch, length, dim = x.shape
        source = block.norm1(x) if block.layer_norm_first else x
        qkv = linear(attn.qkv, source)
        q, k, v = qkv.reshape(batch, length, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=attn.scale)
        x = x + linear(attn.proj, y.transpose(1, 2).reshape(batch, length, dim))
        if block.layer_norm_first:  # as in funasr: the MLP output is added to itself
            mlp = self.mlp(block.mlp, block.norm2(x))
            return mlp + mlp
        residual = block.norm1(x)
        return block.norm2(residual + self.mlp(block.mlp, residual))

    def mlp(self, mlp, x: torch.Tensor) -> torch.Tensor:
        """funasr's (timm's) Mlp in eval mode: fc1, activation, norm, fc2 (dropouts are off)."""
        return self.linear(mlp.fc2, mlp.norm(in_place(mlp.act)(self.linear(mlp.fc1, x))))

    def positions(self, x: torch.Tensor, padding: torch.Tensor | None) -> torch.Tensor:
        """The grouped positional convolutions, re-zeroing padded frames after each layer.

        One clip alone is zero-padded at its end by every conv layer; zeroing the batch's
        padding between layers gives each clip exactly that. Each layer is funasr's
        (Conv1d, SamePad, TransposeLast, LayerNorm, TransposeLast, GELU), run time-major:
        (B, T, D) is the memory of a channels-last conv input; `conv` runs it as one, or on
        a channel-major copy, whichever was faster at load (results within 2e-6 of each
        other, relative).
        """
        encoder = self.encoder.relative_positional_encoder
        if self.encoder.modality_cfg.conv_pos_pre_ln:
            pre_norm, encoder = encoder[0], encoder[1]
            x = pre_norm(x)
        for conv, same_pad, _, norm, _, activation in list(encoder)[1:-1]:
            x = self.conv(conv, x)
            if same_pad.remove:
                x = x[:, : -same_pad.remove]
            x = in_place(activation)(norm(x))
            if padding is not None:
                x.masked_fill_(padding[..., None], 0)
        return x

    def alibi_bias(self, length: int, device) -> torch.Tensor:
        """The ALiBi attention bias for `length` tokens: (1, H, length, length) float32.

        The bias depends only on token distance, so one bias for the longest input seen
        is kept and sliced (under a lock: several threads may encode at once) instead of
        rebuilding a 146 MB tensor for every 30 s window. The backend bounds `length`.
        """
        if not self.cache_bias:
            return self.build_alibi_bias(length, device)
        with self._bias_lock:
            cached = self._bias_cache
            if cached is None or cached.shape[-1] < length or cached.device != torch.device(device):
                self._bias_cache = cached = self.build_alibi_bias(length, device)
        return cached[:, :, :length, :length]

    def build_alibi_bias(self, length, device) -> torch.Tensor:
        """funasr's bias (`get_alibi`): -|i - j| x slope per ALiBi head, times the scale
        unless it is per layer; zero for extra tokens (first) and heads past the ALiBi
        ones. `length` may be a traced size: the bias is plain tensor arithmetic."""
        enc, extra = self.encoder, self.encoder.modality_cfg.num_extra_tokens
        steps = torch.arange(length - extra, device=device)
        distance = -(steps[None, :] - steps[:, None]).abs()  # (T, T) int64, as funasr
        bias = self.slopes.to(device)[None, :, None, None] * distance[None, None]  # (1, H_alibi, T, T) float32
        scale = enc.alibi_scale.clamp_min(0).float()  # (layers|1, 1, H_alibi|1, 1, 1)
        if scale.size(0) == 1:
            bias = bias * scale.squeeze(0)
        return F.pad(bias, (extra, 0, extra, 0, 0, self.heads - bias.size(1)))


def alibi_slopes(encoder: torch.nn.Module) -> torch.Tensor:
    """The per-head ALiBi slopes of funasr's encoder, (H_alibi,) float32: read back from
    its own bias of two tokens (bias[h, 0, 1] = -slope[h])."""
    cfg = encoder.modality_cfg
    bias = encoder.get_alibi_bias(batch_size=1, time_steps=2, heads=cfg.num_alibi_heads,
                                  dtype=torch.float32, device="cpu")
    return -bias[0, :, 0, 1].clone()
