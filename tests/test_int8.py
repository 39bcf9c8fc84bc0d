"""precision="int8": the linear layers of the transformer and the conv front end as dynamically
quantised int8 (CPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emotion2vec_ui import load_model
from emotion2vec_ui.engine import kernels
from emotion2vec_ui.errors import ModelLoadError

from .conftest import random_speechlike

MIN_COSINE = 0.99  # per clip mean embedding, int8 vs fp32 (the drift target)
MAX_SCORE_DIFF = 0.05  # largest probability difference on the tiny random model (head gain 20)


@pytest.fixture(scope="module")
def int8_model(tiny_checkpoint):
    return load_model(tiny_checkpoint, device="cpu", precision="int8")


def test_linear_layers_are_quantised(int8_model):
    backend = int8_model.backend
    assert backend.precision == "int8"
    dynamic = torch.ao.nn.quantized.dynamic.Linear
    for block in backend.blocks:
        for layer in (block.attn.qkv, block.attn.proj, block.mlp.fc1, block.mlp.fc2):
            assert isinstance(layer, dynamic)
    # the conv front end: every layer's GEMM but the first (ten taps of one channel), and the projection
    steps = backend.front_end.steps
    assert type(steps[0].gemm) is torch.nn.Linear
    assert all(isinstance(step.gemm, dynamic) for step in steps[1:])
    assert [type(m) for m in backend.front_end.projection] == [torch.nn.LayerNorm, dynamic]
    # funasr's own projection module is left float32 (the head is float32 numpy anyway)
    assert all(type(m) is not dynamic for m in backend.encoder.project_features)


def test_int8_stays_close_to_fp32(int8_model, tiny_model):
    clips = [(random_speechlike(s, seed=20 + i), 16_000) for i, s in enumerate((3.0, 1.2, 0.5))]
    quantised = int8_model.predict_batch(clips, granularity="frame", embedding=True)
    exact = tiny_model.predict_batch(clips, granularity="frame", embedding=True)
    for a, b in zip(quantised, exact):
        mean_a, mean_b = a.embedding.mean(0), b.embedding.mean(0)
        assert mean_a @ mean_b / (np.linalg.norm(mean_a) * np.linalg.norm(mean_b)) >= MIN_COSINE
        assert max(abs(a.scores[k] - b.scores[k]) for k in a.scores) <= MAX_SCORE_DIFF
        assert not np.allclose(a.embedding, b.embedding, atol=1e-5)  # it really ran in int8


def test_int8_is_cpu_only(tiny_checkpoint, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises(ModelLoadError, match="CPU only"):
        load_model(tiny_checkpoint, device="cuda", precision="int8")


AMX_FLAGS = {"avx512f", "avx512_vnni", "amx_tile", "amx_bf16", "amx_int8"}


@pytest.mark.parametrize("flags, capability, onednn_cap, engine", [
    (AMX_FLAGS, "AVX512", None, "onednn"),
    (AMX_FLAGS, "AVX512", "avx512_core_amx", "onednn"),
    (AMX_FLAGS, "AVX512", "AVX512_CORE_VNNI", "fbgemm"),  # oneDNN capped below AMX
    (AMX_FLAGS, "AVX2", None, "fbgemm"),  # torch's kernels limited to AVX2 (ATEN_CPU_CAPABILITY)
    ({"avx512f", "avx512_vnni"}, "AVX512", None, "fbgemm"),
    ({"avx2"}, "AVX2", None, "fbgemm"),
])
def test_int8_runs_on_onednn_only_where_it_has_amx(monkeypatch, flags, capability, onednn_cap, engine):
    if "onednn" not in torch.backends.quantized.supported_engines:
        pytest.skip("this torch build has no oneDNN quantised engine")
    monkeypatch.setattr(kernels, "_cpu_flags", lambda: flags)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    if onednn_cap:
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", onednn_cap)
    else:
        monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    assert kernels.int8_engine() == engine


def test_onednn_int8_model_agrees_with_fbgemm(tiny_checkpoint, monkeypatch):
    """The int8 model packed for oneDNN's kernels (AMX CPUs) gives fbgemm's results, on any x86 CPU."""
    engines = torch.backends.quantized.supported_engines
    if not {"onednn", "fbgemm"} <= set(engines):
        pytest.skip(f"this torch build lacks oneDNN or fbgemm quantised engines: {engines}")
    monkeypatch.setattr(torch.backends.quantized, "engine", torch.backends.quantized.engine)  # restored after
    models = {}
    for engine in ("onednn", "fbgemm"):
        monkeypatch.setattr(kernels, "int8_engine", lambda engine=engine: engine)
        models[engine] = load_model(tiny_checkpoint, device="cpu", precision="int8")
        assert torch.backends.quantized.engine == engine  # the layers were packed for its kernels
    clips = [(random_speechlike(s, seed=40 + i), 16_000) for i, s in enumerate((2.0, 0.7))]
    for a, b in zip(*(model.predict_batch(clips, granularity="frame", embedding=True) for model in models.values())):
        np.testing.assert_allclose(a.embedding, b.embedding, atol=1e-3, rtol=1e-3)
        np.testing.assert_allclose(a.frame_scores, b.frame_scores, atol=1e-3)
