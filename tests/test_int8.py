"""precision="int8": the linear layers of the transformer and the conv front end as dynamically
quantised int8 (CPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emotion2vec_ui import load_model
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
