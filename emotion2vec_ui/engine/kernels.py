"""Which CPU kernels run the model's matrix products and convolutions: chosen once at load,
on this CPU.

torch's default float32 matmul goes through MKL, which takes its AVX-512 code only on
Intel processors; oneDNN's inner product (also in torch) uses AVX-512 on any vendor and
was faster on the AMD CPUs measured with AVX-512 and with AVX2 (bench/RESULTS.md). Which
is faster on a given CPU is a measurement, not a rule, so the load times both on one of
the model's layer sizes and keeps the vendor's own (MKL on Intel, oneDNN elsewhere) unless
the other is clearly faster. int8 uses torch's dynamically quantised linear layers
(per-channel int8 weights, activations quantised per call) on oneDNN's AMX kernels where
the CPU has AMX, else on fbgemm's. The positional convolutions (grouped, time-major input)
run as a channels-last convolution or on a channel-major copy, whichever the load times faster.
"""

from __future__ import annotations

import functools
import os
import time
import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F

from .backend import device_kind

Linear = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]  # (x, weight, bias) -> y
LayerLinear = Callable[[torch.nn.Module, torch.Tensor], torch.Tensor]  # (nn.Linear or its int8 twin, x) -> y
# (nn.Conv1d, x (B, T, C_in) time-major) -> (B, T', C_out) time-major (a view, maybe not contiguous)
TimeMajorConv = Callable[[torch.nn.Conv1d, torch.Tensor], torch.Tensor]

# The float32 GEMM timed at load: a feed-forward layer on 8 s of audio (rows, in, out), about
# 3.4 GFLOP a call; the library not native to the CPU's vendor is chosen only when it takes
# under 1/MARGIN of the other's time.
TIMED_GEMM_SHAPE = (400, 1024, 4096)
MARGIN = 1.1
TIMED_REPEATS = 3  # each timed kernel's best of this many calls, after a warm-up call
# The positional convolution timed at load: 10 s of frames, batch of one; the channel-major
# copy is chosen only when it takes under 1/MARGIN of the channels-last convolution's time.
TIMED_CONV_FRAMES = 500


def cpu_isa() -> str:
    """The widest vector ISA torch's CPU kernels use: "AMX" (AVX-512 with AMX tiles),
    "AVX512", "AVX2" or "DEFAULT"; honours torch's ATEN_CPU_CAPABILITY override."""
    capability = torch.backends.cpu.get_cpu_capability()
    if capability == "AVX512" and _cpu_flags() >= {"amx_tile", "amx_bf16"}:
        return "AMX"
    return capability


def _cpu_flags() -> set[str]:
    return set(_cpuinfo().get("flags", "").split())


def cpu_is_intel() -> bool:
    """Whether /proc/cpuinfo names an Intel CPU (MKL takes its widest code only there)."""
    return _cpuinfo().get("vendor_id") == "GenuineIntel"


@functools.cache
def _cpuinfo() -> dict[str, str]:
    """The first processor's fields in /proc/cpuinfo ({} where there is none), read once:
    every int8 layer built asks for them."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            text = info.read().split("\n\n", 1)[0]
    except OSError:
        return {}
    fields = (line.split(":", 1) for line in text.splitlines() if ":" in line)
    return {name.strip(): value.strip() for name, value in fields}


def onednn_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """oneDNN's float32 inner product (float32 accumulation; only the summation order differs)."""
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


def pick_linear(device: str, dtype: torch.dtype) -> Linear:
    """How float32 linear layers run on `device`: `linear(x, weight, bias)`.

    On the CPU in float32, `cpu_fp32_linear()`; elsewhere (CUDA, or under autocast)
    torch's own `F.linear`.
    """
    if device_kind(device) != "cpu" or dtype != torch.float32:
        return F.linear
    return cpu_fp32_linear()


@functools.cache
def cpu_fp32_linear() -> Linear:
    """The float32 linear for this CPU, decided once per process by `time_fp32_linears`:
    each vendor's own library unless the other is clearly (MARGIN) faster. On Intel CPUs
    torch's F.linear (MKL), elsewhere oneDNN's inner product (where this build has it and it
    agrees with F.linear). On 2 Intel Xeon cores (AMX) the two were within 0-11 % of each
    other on the model's layer sizes and MKL ran clip sets 1-22 % faster; on AMD EPYC (Zen 4)
    oneDNN ran the layer sizes about twice as fast as MKL."""
    if not torch.backends.mkldnn.is_available():
        return F.linear
    x, weight, bias = torch.randn(2, 3, 64), torch.randn(32, 64), torch.randn(32)
    try:
        with torch.inference_mode():
            agrees = torch.allclose(onednn_linear(x, weight, bias), F.linear(x, weight, bias), rtol=1e-4, atol=1e-5)
    except (AttributeError, RuntimeError):  # op missing or unsupported on this build
        return F.linear
    if not agrees:
        return F.linear
    seconds = dict(zip((onednn_linear, F.linear), time_fp32_linears()))
    native, other = (F.linear, onednn_linear) if cpu_is_intel() else (onednn_linear, F.linear)
    return other if seconds[other] * MARGIN < seconds[native] else native


def time_fp32_linears() -> tuple[float, float]:
    """`best_seconds` of oneDNN's and of F.linear's float32 product on TIMED_GEMM_SHAPE
    (0.25-0.3 s measured on 2 AMD EPYC cores, warm-up included)."""
    rows, inputs, outputs = TIMED_GEMM_SHAPE
    x, weight, bias = torch.randn(rows, inputs), torch.randn(outputs, inputs), torch.randn(outputs)
    onednn_s, mkl_s = best_seconds([lambda: onednn_linear(x, weight, bias), lambda: F.linear(x, weight, bias)])
    return onednn_s, mkl_s


def best_seconds(calls: list[Callable[[], object]]) -> list[float]:
    """Best-of-`TIMED_REPEATS` wall seconds of each call (in inference mode), after one
    warm-up call each (oneDNN builds its primitive on the first); calls interleaved, so a
    passing load weighs on all of them."""
    best = [float("inf")] * len(calls)
    with torch.inference_mode():
        for call in calls:
            call()
        for _ in range(TIMED_REPEATS):
            for i, call in enumerate(calls):
                start = time.perf_counter()
                call()
                best[i] = min(best[i], time.perf_counter() - start)
    return best


def conv_channels_last(conv: torch.nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    """`conv` on time-major (B, T, C_in) -> (B, T', C_out): a 2-D convolution of height 1 on
    the channels-last view of `x` (no copy either way; oneDNN takes its direct convolution)."""
    y = F.conv2d(x.transpose(1, 2).unsqueeze(2), conv.weight.unsqueeze(2), conv.bias, stride=(1, conv.stride[0]),
                 padding=(0, conv.padding[0]), dilation=(1, conv.dilation[0]), groups=conv.groups)
    return y.squeeze(2).transpose(1, 2)


def conv_channel_major(conv: torch.nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    """`conv` on time-major (B, T, C_in) -> (B, T', C_out): the plain convolution on a
    channel-major copy of `x`; the result is a time-major view of its output."""
    return conv(x.transpose(1, 2).contiguous()).transpose(1, 2)


def pick_time_major_conv(device: str, dtype: torch.dtype, conv: torch.nn.Conv1d) -> TimeMajorConv:
    """How `conv` (and the layers shaped like it) runs on time-major input on `device`: on
    the CPU in float32 `cpu_time_major_conv()` for its shape, else `conv_channels_last`."""
    if device_kind(device) != "cpu" or dtype != torch.float32:
        return conv_channels_last
    return cpu_time_major_conv(conv.in_channels, conv.out_channels, conv.kernel_size[0], conv.groups)


@functools.cache
def cpu_time_major_conv(in_channels: int, out_channels: int, kernel: int, groups: int) -> TimeMajorConv:
    """The time-major convolution for this CPU and shape, decided once per process by
    `time_time_major_convs`: channels-last unless the channel-major copy is clearly (MARGIN)
    faster. For the model's positional convolutions (1024 channels, 16 groups, 19 taps) on
    2 cores, channels-last took 20-30 % less time on an Intel Xeon limited to AVX2; on an
    AMD EPYC (Zen 4) limited to AVX2 the channel-major copy took about half the time."""
    conv = torch.nn.Conv1d(in_channels, out_channels, kernel, padding=kernel // 2, groups=groups)
    channels_last_s, channel_major_s = time_time_major_convs(conv)
    return conv_channel_major if channel_major_s * MARGIN < channels_last_s else conv_channels_last


def time_time_major_convs(conv: torch.nn.Conv1d) -> tuple[float, float]:
    """`best_seconds` of `conv` on TIMED_CONV_FRAMES time-major frames, channels-last and on
    a channel-major copy (0.1-0.3 s measured on 2 AMD EPYC cores, warm-up included)."""
    x = torch.randn(1, TIMED_CONV_FRAMES, conv.in_channels)
    channels_last_s, channel_major_s = best_seconds([lambda: conv_channels_last(conv, x),
                                                     lambda: conv_channel_major(conv, x)])
    return channels_last_s, channel_major_s


def in_place(activation: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """`activation` applied in place when it is the exact GELU (the model's), else as is.

    For inputs nothing else holds: it spares a fresh tensor as large as a feed-forward's
    widest output per call. The same result to the bit; on 2 AVX2 cores a clip set ran
    about 2 % faster with int8 and 8-15 % with float32 (alternating runs)."""
    if type(activation) is torch.nn.GELU and activation.approximate == "none":
        return torch.ops.aten.gelu_
    return activation


def layer_linear(linear: Linear) -> LayerLinear:
    """`linear` applied to an nn.Linear's own weight and bias."""
    return lambda layer, x: linear(x, layer.weight, layer.bias)


def int8_linear(layer: torch.nn.Linear) -> torch.nn.Module:
    """`layer` as torch's dynamically quantised int8 linear (`int8_engine()`'s kernels):
    weights int8 per output channel, activations quantised per call from their own range."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicInt8Linear  # heavy: int8 only
    from torch.ao.quantization import per_channel_dynamic_qconfig  # heavy: int8 only

    use_int8_engine()
    layer.qconfig = per_channel_dynamic_qconfig
    with warnings.catch_warnings():  # torch flags its quantised tensors as deprecated in favour of torchao
        warnings.simplefilter("ignore")
        return DynamicInt8Linear.from_float(layer)


def use_int8_engine() -> None:
    """Make `int8_engine()` torch's engine for the quantised layers built next (a layer
    keeps the kernels it was packed for)."""
    torch.backends.quantized.engine = int8_engine()


def int8_engine() -> str:
    """torch's quantised-kernel engine for int8 linears on this CPU: oneDNN where its int8
    products run on AMX tiles (`onednn_has_amx`), else fbgemm, else qnnpack.

    On 2 Intel Xeon cores with AMX, oneDNN's product ran the model's layer sizes at
    555-785 GOP/s against fbgemm's 329-397 (AVX512-VNNI); capped below AMX it ran at about
    fbgemm's speed, with AVX512-VNNI and with AVX2 (on a Zen 4 with AVX2, faster only while
    row counts repeat: it builds kernels for each new one), so fbgemm stays the engine there."""
    engines = torch.backends.quantized.supported_engines
    if "onednn" in engines and onednn_has_amx():
        return "onednn"
    return "fbgemm" if "fbgemm" in engines else "qnnpack"


def onednn_has_amx() -> bool:
    """Whether oneDNN may use AMX int8 tiles here: the CPU has them, torch's kernels use
    AVX-512 (`cpu_isa`), and no ONEDNN_MAX_CPU_ISA / DNNL_MAX_CPU_ISA caps oneDNN below AMX."""
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "ALL"
    return cpu_isa() == "AMX" and "amx_int8" in _cpu_flags() and (cap.upper() == "ALL" or "AMX" in cap.upper())


def quantize_linears_int8(modules: list[torch.nn.Module]) -> LayerLinear:
    """Replace every nn.Linear inside `modules` (in place) by its int8 twin (`int8_linear`):
    float32 in and out. Returns how to call a layer."""
    for module in modules:
        for parent in list(module.modules()):
            for name, child in list(parent.named_children()):
                if type(child) is torch.nn.Linear:
                    setattr(parent, name, int8_linear(child))
    return lambda layer, x: layer(x)
