"""Which CPU kernels run the model's matrix products: chosen once at load from the CPU's ISA.

torch's default float32 matmul goes through MKL, which takes its AVX-512 code only on
Intel processors; oneDNN's inner product (also in torch) uses AVX-512 on any vendor.
`FP32_LINEAR_BY_ISA` records what was measured to be faster for the model's layer
sizes on each instruction set (see bench/RESULTS.md); int8 uses fbgemm's dynamically
quantised linear layers (per-channel int8 weights, activations quantised per call).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F

Linear = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]  # (x, weight, bias) -> y
LayerLinear = Callable[[torch.nn.Module, torch.Tensor], torch.Tensor]  # (nn.Linear or its int8 twin, x) -> y

# float32 GEMM on the CPU per ISA (torch.backends.cpu.get_cpu_capability()), measured
# with the model's layer sizes on 2 AMD EPYC cores; "onednn" where it is at least as fast.
FP32_LINEAR_BY_ISA = {"AVX512": "onednn", "AVX2": "onednn"}


def cpu_isa() -> str:
    """The widest vector ISA torch's CPU kernels use: "AMX" (AVX-512 with AMX tiles),
    "AVX512", "AVX2" or "DEFAULT"; honours torch's ATEN_CPU_CAPABILITY override."""
    capability = torch.backends.cpu.get_cpu_capability()
    if capability == "AVX512" and _cpu_flags() >= {"amx_tile", "amx_bf16"}:
        return "AMX"
    return capability


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            line = next((line for line in info if line.startswith("flags")), "")
    except OSError:
        return set()
    return set(line.split(":", 1)[-1].split())


def onednn_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """oneDNN's float32 inner product (float32 accumulation; only the summation order differs)."""
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


def pick_linear(device: str, dtype: torch.dtype, isa: str | None = None) -> Linear:
    """How float32 linear layers run on `device`: `linear(x, weight, bias)`.

    On the CPU in float32, the kernel FP32_LINEAR_BY_ISA names for this ISA (oneDNN when
    it agrees with F.linear on this build). Elsewhere (CUDA, or under autocast) torch's
    own `F.linear`.
    """
    if torch.device(device).type != "cpu" or dtype != torch.float32 or not torch.backends.mkldnn.is_available():
        return F.linear
    isa = isa or cpu_isa()
    if FP32_LINEAR_BY_ISA.get("AVX512" if isa == "AMX" else isa) != "onednn":
        return F.linear
    x, weight, bias = torch.randn(2, 3, 64), torch.randn(32, 64), torch.randn(32)
    try:
        with torch.inference_mode():
            agrees = torch.allclose(onednn_linear(x, weight, bias), F.linear(x, weight, bias), rtol=1e-4, atol=1e-5)
    except (AttributeError, RuntimeError):  # op missing or unsupported on this build
        return F.linear
    return onednn_linear if agrees else F.linear


def layer_linear(linear: Linear) -> LayerLinear:
    """`linear` applied to an nn.Linear's own weight and bias."""
    return lambda layer, x: linear(x, layer.weight, layer.bias)


def int8_linear(layer: torch.nn.Linear) -> torch.nn.Module:
    """`layer` as fbgemm's dynamically quantised int8 linear: weights int8 per output
    channel, activations quantised per call from their own range."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicInt8Linear
    from torch.ao.quantization import per_channel_dynamic_qconfig

    use_int8_engine()
    layer.qconfig = per_channel_dynamic_qconfig
    with warnings.catch_warnings():  # torch flags its quantised tensors as deprecated in favour of torchao
        warnings.simplefilter("ignore")
        return DynamicInt8Linear.from_float(layer)


def use_int8_engine() -> None:
    """fbgemm (x86) for torch's quantised kernels where this build has it, else qnnpack."""
    torch.backends.quantized.engine = "fbgemm" if "fbgemm" in torch.backends.quantized.supported_engines else "qnnpack"


def quantize_linears_int8(modules: list[torch.nn.Module]) -> LayerLinear:
    """Replace every nn.Linear inside `modules` (in place) by its int8 twin (`int8_linear`):
    float32 in and out. Returns how to call a layer."""
    for module in modules:
        for parent in list(module.modules()):
            for name, child in list(parent.named_children()):
                if type(child) is torch.nn.Linear:
                    setattr(parent, name, int8_linear(child))
    return lambda layer, x: layer(x)
