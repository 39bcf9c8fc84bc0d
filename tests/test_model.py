"""Loading checkpoints through funasr, verifying their weights, and the batched forward pass."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from emotion2vec_ui import load_model
from emotion2vec_ui.engine import kernels
from emotion2vec_ui.engine.checkpoint import build_checkpoint, template_tokens
from emotion2vec_ui.engine.kernels import onednn_linear, pick_linear
from emotion2vec_ui.engine.torch_backend import FrameGeometry, load_backend, pick_device
from emotion2vec_ui.errors import CheckpointMismatchError, ModelLoadError

from .conftest import random_speechlike


def test_tiny_checkpoint_has_the_published_layout(tiny_checkpoint):
    names = sorted(p.name for p in tiny_checkpoint.iterdir())
    assert names == ["config.yaml", "configuration.json", "model.pt", "tokens.txt"]
    assert (tiny_checkpoint / "model.pt").stat().st_size < 1_000_000
    state = torch.load(tiny_checkpoint / "model.pt", weights_only=True)
    assert "proj.weight" in state and not any(k.startswith("modality_encoders.AUDIO.decoder.") for k in state)
    config = yaml.safe_load((tiny_checkpoint / "config.yaml").read_text())
    assert config["model"] == "Emotion2vec" and config["model_conf"]["embed_dim"] == 64


def test_loads_labels_and_geometry(tiny_model):
    backend = tiny_model.backend
    assert tiny_model.labels == [
        "angry", "disgusted", "fearful", "happy", "neutral", "other", "sad", "surprised", "unknown",
    ]
    assert backend.geometry.hop == 320 and backend.geometry.receptive_field == 400
    assert backend.embed_dim == 64 and tiny_model.device == "cpu"


@pytest.mark.parametrize("samples, frames", [(400, 1), (719, 1), (720, 2), (16_000, 49), (160_000, 499), (480_000, 1499)])
def test_frame_count_formula(samples, frames):
    geometry = FrameGeometry(((10, 5),) + ((3, 2),) * 4 + ((2, 2),) * 2)
    assert geometry.num_frames(samples) == frames == (samples - 400) // 320 + 1


def test_frame_count_matches_the_network(tiny_model):
    backend = tiny_model.backend
    for n in (400, 719, 720, 5_000, 16_003):
        (features,) = backend.encode([backend.prepare(random_speechlike(n / 16_000)[:n])])
        assert features.shape == (backend.geometry.num_frames(n), backend.embed_dim)


def test_batch_result_does_not_depend_on_batch_mates(tiny_model):
    backend = tiny_model.backend
    waves = [backend.prepare(random_speechlike(s, seed=i)) for i, s in enumerate((3.0, 0.7, 1.9, 0.03))]
    batched = backend.encode(waves)
    for wave, together in zip(waves, batched):
        (alone,) = backend.encode([wave])
        assert together.shape == alone.shape
        np.testing.assert_allclose(together, alone, atol=1e-4)


@pytest.mark.parametrize("pieces", [("clip", 100), ("batch", 37)])  # the CPU's and the GPU's way
def test_time_major_front_end_equals_funasr_modules(tiny_checkpoint, pieces):
    """The conv front end as pieces of windowed GEMMs equals funasr's own modules."""
    backend = load_backend(tiny_checkpoint, device="cpu")
    assert backend.front_end.steps is not None  # the published config's layer_norm front end
    backend.front_end.pieces = pieces
    batch = torch.from_numpy(np.stack([backend.prepare(random_speechlike(5.3, seed=s)) for s in (1, 2)]))
    with torch.inference_mode():
        ours = backend.front_end(batch)  # several pieces per clip
        funasr = backend.encoder.project_features(backend.encoder.local_encoder(batch))
    assert ours.shape == funasr.shape == (2, backend.geometry.num_frames(batch.shape[1]), backend.embed_dim)
    torch.testing.assert_close(ours, funasr, rtol=1e-4, atol=1e-5)


def test_front_end_normalising_over_time_runs_whole(tiny_checkpoint, tmp_path):
    """extractor_mode default (group norm over time in the first layer) cannot be cut
    into pieces: it runs funasr's modules on the whole input and still matches them."""
    folder = shutil.copytree(tiny_checkpoint, tmp_path / "default-mode")
    config = yaml.safe_load((folder / "config.yaml").read_text())
    config["model_conf"]["modalities"]["audio"]["extractor_mode"] = "default"
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    state = torch.load(folder / "model.pt")
    channels = state["modality_encoders.AUDIO.local_encoder.conv_layers.0.0.weight"].shape[0]
    state["modality_encoders.AUDIO.local_encoder.conv_layers.0.2.weight"] = torch.rand(channels) + 0.5
    state["modality_encoders.AUDIO.local_encoder.conv_layers.0.2.bias"] = torch.randn(channels)
    torch.save(state, folder / "model.pt")
    backend = load_backend(folder, device="cpu")
    assert backend.front_end.steps is None
    wave = torch.from_numpy(backend.prepare(random_speechlike(4.0, seed=3)))[None]
    with torch.inference_mode():
        whole = backend.encoder.project_features(backend.encoder.local_encoder(wave))
        torch.testing.assert_close(backend.front_end(wave), whole)


@pytest.mark.parametrize("layout", [kernels.conv_channels_last, kernels.conv_channel_major])
@pytest.mark.parametrize("kernel", [19, 8])  # the published width's kernel, and an even one SamePad trims
def test_time_major_positional_convolutions_equal_funasr_modules(tiny_checkpoint, kernel, layout):
    """The positional convolutions on time-major input, either way, equal funasr's own module."""
    from funasr.models.emotion2vec.fairseq_modules import SamePad

    backend = load_backend(tiny_checkpoint, device="cpu")
    backend.transformer.conv = layout
    positional = backend.encoder.relative_positional_encoder
    torch.manual_seed(kernel)
    for layer in list(positional)[1:-1]:
        conv = layer[0]
        layer[0] = torch.nn.Conv1d(conv.in_channels, conv.out_channels, kernel, padding=kernel // 2, groups=conv.groups)
        layer[1] = SamePad(kernel)
    assert positional[1][1].remove == (kernel % 2 == 0)
    features = torch.randn(2, 53, backend.embed_dim)
    with torch.inference_mode():
        torch.testing.assert_close(backend.transformer.positions(features, None), positional(features),
                                   rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_linear_layers_match_torch(precision):
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[precision]
    linear = pick_linear("cpu", dtype)
    # float32 on the CPU takes whichever was faster at load; autocast handles reduced precision
    assert linear in (onednn_linear, torch.nn.functional.linear)
    if precision == "bf16":
        assert linear is torch.nn.functional.linear
    x, weight, bias = torch.randn(3, 70, 256), torch.randn(512, 256), torch.randn(512)  # outputs ~16
    with torch.inference_mode():
        torch.testing.assert_close(linear(x, weight, bias), torch.nn.functional.linear(x, weight, bias), rtol=1e-5, atol=1e-4)
        torch.testing.assert_close(linear(x, weight, None), x @ weight.T, rtol=1e-5, atol=1e-4)


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="this torch build has no oneDNN")
@pytest.mark.parametrize(("intel", "onednn_s", "mkl_s", "picked"), [
    (False, 0.020, 0.030, onednn_linear),  # oneDNN faster: oneDNN
    (False, 0.020, 0.019, onednn_linear),  # MKL faster, but within the margin: oneDNN
    (False, 0.030, 0.020, torch.nn.functional.linear),  # MKL clearly faster: MKL
    (True, 0.030, 0.020, torch.nn.functional.linear),  # on Intel, MKL faster: MKL
    (True, 0.019, 0.020, torch.nn.functional.linear),  # oneDNN faster, but within the margin: MKL
    (True, 0.015, 0.020, onednn_linear),  # oneDNN clearly faster: oneDNN
])
def test_float32_gemm_is_picked_by_timing(monkeypatch, intel, onednn_s, mkl_s, picked):
    monkeypatch.setattr(kernels, "cpu_is_intel", lambda: intel)
    monkeypatch.setattr(kernels, "time_fp32_linears", lambda: (onednn_s, mkl_s))
    kernels.cpu_fp32_linear.cache_clear()  # decided once per process: decide again here
    try:
        assert pick_linear("cpu", torch.float32) is picked
    finally:
        kernels.cpu_fp32_linear.cache_clear()


def test_float32_gemm_timing_measures_both():
    onednn_s, mkl_s = kernels.time_fp32_linears()
    assert 0 < onednn_s < float("inf") and 0 < mkl_s < float("inf")


@pytest.mark.parametrize("run", [kernels.conv_channels_last, kernels.conv_channel_major])
@pytest.mark.parametrize(("stride", "padding", "groups"), [(1, 4, 4), (2, 0, 1), (1, 0, 2)])
def test_time_major_convolutions_equal_the_plain_one(run, stride, padding, groups):
    conv = torch.nn.Conv1d(8, 12, 9, stride=stride, padding=padding, groups=groups)
    x = torch.randn(2, 37, 8)  # (B, T, C_in) time-major
    with torch.inference_mode():
        expected = conv(x.transpose(1, 2)).transpose(1, 2)
        torch.testing.assert_close(run(conv, x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("channels_last_s", "channel_major_s", "picked"), [
    (0.030, 0.015, kernels.conv_channel_major),  # channel-major clearly faster
    (0.020, 0.019, kernels.conv_channels_last),  # faster, but within the margin: channels-last
    (0.015, 0.030, kernels.conv_channels_last),
])
def test_position_convolution_layout_is_picked_by_timing(monkeypatch, channels_last_s, channel_major_s, picked):
    monkeypatch.setattr(kernels, "time_time_major_convs", lambda conv: (channels_last_s, channel_major_s))
    kernels.cpu_time_major_conv.cache_clear()  # decided once per process and shape: decide again here
    conv = torch.nn.Conv1d(16, 16, 5, groups=4)
    try:
        assert kernels.pick_time_major_conv("cpu", torch.float32, conv) is picked
        # reduced precision runs under autocast, measured in float32 only: the channels-last default
        assert kernels.pick_time_major_conv("cpu", torch.bfloat16, conv) is kernels.conv_channels_last
    finally:
        kernels.cpu_time_major_conv.cache_clear()


@pytest.mark.parametrize("picked", [kernels.conv_channel_major, kernels.conv_channels_last])
def test_loaded_model_runs_the_picked_position_convolution(monkeypatch, tiny_checkpoint, picked):
    faster = (0.030, 0.010) if picked is kernels.conv_channel_major else (0.010, 0.030)
    monkeypatch.setattr(kernels, "time_time_major_convs", lambda conv: faster)
    kernels.cpu_time_major_conv.cache_clear()
    try:
        assert load_backend(tiny_checkpoint, device="cpu").transformer.conv is picked
    finally:
        kernels.cpu_time_major_conv.cache_clear()


def test_position_convolution_timing_measures_both():
    channels_last_s, channel_major_s = kernels.time_time_major_convs(torch.nn.Conv1d(64, 64, 7, padding=3, groups=4))
    assert 0 < channels_last_s < float("inf") and 0 < channel_major_s < float("inf")


def test_exact_gelu_runs_in_place_and_others_as_they_are():
    x = torch.randn(3, 7, 16)
    expected = torch.nn.functional.gelu(x)
    out = kernels.in_place(torch.nn.GELU())(x)
    assert out.data_ptr() == x.data_ptr() and torch.equal(out, expected)
    for other in (torch.nn.GELU(approximate="tanh"), torch.nn.ReLU()):
        assert kernels.in_place(other) is other


def test_mean_of_frame_logits_equals_utterance_logits(tiny_model):
    backend = tiny_model.backend
    (features,) = backend.encode([backend.prepare(random_speechlike(2.0))])
    frame_logits = backend.logits(features)  # (T, K)
    utterance_logits = backend.logits(features.mean(axis=0))  # (K,)
    np.testing.assert_allclose(frame_logits.mean(axis=0), utterance_logits, atol=1e-5)


def test_older_revision_with_unused_labels(tmp_path):
    tokens = template_tokens()
    tokens = [tokens[0], "unuse_0", tokens[2], "unuse_1", tokens[4], "unuse_2", tokens[6], "unuse_3", tokens[8]]
    folder = build_checkpoint(tmp_path / "five", "tiny", tokens=tokens)
    model = load_model(folder, device="cpu")
    assert model.labels == ["angry", "fearful", "neutral", "sad", "unknown"]
    result = model.predict((random_speechlike(1.0), 16_000))
    assert list(result.scores) == model.labels
    assert abs(sum(result.scores.values()) - 1) < 1e-6


def test_a_built_checkpoint_is_marked_random_and_says_so_in_its_results(tmp_path, tiny_checkpoint, tiny_model):
    """build-checkpoint marks configuration.json; funasr still loads the folder (it reads only
    file_path_metas) and the recognizer and its results say the emotions are meaningless."""
    from emotion2vec_ui.engine.checkpoint import TEMPLATE
    from emotion2vec_ui.results import RANDOM_WEIGHTS_WARNING

    configuration = json.loads((tiny_checkpoint / "configuration.json").read_text(encoding="utf-8"))
    template = json.loads((TEMPLATE / "configuration.json").read_text(encoding="utf-8"))
    assert configuration == {**template, "random_weights": True, "random_weights_note": configuration["random_weights_note"]}
    assert "meaningless" in configuration["random_weights_note"]
    assert tiny_model.random_weights is True and tiny_model.backend.random_weights is True
    for granularity in ("utterance", "frame"):
        data = tiny_model.predict((random_speechlike(2.0), 16_000), granularity).to_dict()
        assert data["random_weights"] is True and data["model_warning"] == RANDOM_WEIGHTS_WARNING

    trained = tmp_path / "trained"  # as a downloaded checkpoint: no mark
    shutil.copytree(tiny_checkpoint, trained)
    (trained / "configuration.json").write_text(json.dumps(template), encoding="utf-8")
    model = load_model(trained, device="cpu", warm_up=False)
    result = model.predict((random_speechlike(2.0), 16_000))
    assert model.random_weights is False and result.random_weights is False
    assert "random_weights" not in result.to_dict() and "model_warning" not in result.to_dict()


def test_missing_weights_are_refused(tmp_path, tiny_checkpoint):
    folder = tmp_path / "broken"
    shutil.copytree(tiny_checkpoint, folder)
    state = torch.load(folder / "model.pt", weights_only=True)
    del state["proj.weight"], state["blocks.0.attn.qkv.weight"]
    torch.save(state, folder / "model.pt")
    with pytest.raises(CheckpointMismatchError, match="2 missing") as caught:
        load_backend(folder, device="cpu")
    assert "proj.weight" in str(caught.value)


def test_config_that_does_not_fit_the_weights_is_refused(tmp_path, tiny_checkpoint):
    folder = tmp_path / "wrong_config"
    shutil.copytree(tiny_checkpoint, folder)
    config = yaml.safe_load((folder / "config.yaml").read_text())
    config["model_conf"]["mlp_ratio"] = 2.0  # the checkpoint's MLPs are 4x wide
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(CheckpointMismatchError, match="not loaded"):
        load_backend(folder, device="cpu")


def test_checkpoint_saved_with_prefix_and_wrapper_loads(tmp_path, tiny_checkpoint):
    """Published checkpoints may nest the state dict and prefix keys with `d2v_model.` (scope_map)."""
    folder = tmp_path / "prefixed"
    shutil.copytree(tiny_checkpoint, folder)
    state = torch.load(folder / "model.pt", weights_only=True)
    torch.save({"model": {"d2v_model." + k: v for k, v in state.items()}}, folder / "model.pt")
    prefixed = load_model(folder, device="cpu")
    plain = load_model(tiny_checkpoint, device="cpu")
    clip = (random_speechlike(1.0), 16_000)
    assert prefixed.predict(clip).scores == pytest.approx(plain.predict(clip).scores, abs=1e-6)


def test_folder_without_model_file(tmp_path, tiny_checkpoint):
    folder = tmp_path / "no_weights"
    shutil.copytree(tiny_checkpoint, folder)
    (folder / "model.pt").unlink()
    with pytest.raises(ModelLoadError, match="lacks model.pt"):
        load_backend(folder, device="cpu")


def test_not_a_folder_nor_hub_id():
    with pytest.raises(ModelLoadError, match="neither a model folder nor a hub id"):
        load_backend("./no/such/folder", device="cpu")


def test_unreachable_hub_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # no network here: fail at once instead of retrying
    with pytest.raises(ModelLoadError) as caught:
        load_backend("emotion2vec/emotion2vec_plus_large", hub="hf", device="cpu")
    message = str(caught.value)
    for expected in ("emotion2vec/emotion2vec_plus_large", "Hugging Face", str(tmp_path / "hf"), "E2V_MODEL=/path",
                     "E2V_HUB=ms", "build-checkpoint DIR --size tiny", "meaningless"):
        assert expected in message


def test_settings_from_the_environment_choose_model_and_device(monkeypatch, tiny_checkpoint):
    from emotion2vec_ui.settings import default_settings, resolve

    monkeypatch.setenv("E2V_MODEL", str(tiny_checkpoint))
    monkeypatch.setenv("E2V_DEVICE", "cpu")
    monkeypatch.setenv("E2V_MAX_DURATION_S", "1.5")
    import argparse

    settings = resolve(argparse.Namespace(), "cli")
    assert settings != default_settings("cli")
    model = load_model(settings.model, **settings.engine_options())
    assert model.model_name == tiny_checkpoint.name and model.device == "cpu"  # no server path
    assert model.limits.max_duration_s == 1.5


def test_device_choice(monkeypatch):
    monkeypatch.delenv("E2V_DEVICE", raising=False)
    assert pick_device() == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ModelLoadError, match="sees no CUDA GPU"):
            pick_device("cuda")


def test_unknown_hub_and_precision(tiny_checkpoint):
    with pytest.raises(ModelLoadError, match="unknown hub"):
        load_backend(tiny_checkpoint, hub="github")
    with pytest.raises(ModelLoadError, match="unknown precision"):
        load_backend(tiny_checkpoint, precision="int4")


def test_funasr_leaves_logging_alone(tiny_checkpoint, capsys):
    import logging

    before = list(logging.getLogger().handlers)
    load_backend(tiny_checkpoint, device="cpu")
    assert logging.getLogger().handlers == before
    assert capsys.readouterr().out == ""


def test_reduced_precision_stays_close_to_fp32(tiny_checkpoint):
    """bf16 autocast on the CPU: same labels, embeddings within a small drift of fp32."""
    fp32 = load_model(tiny_checkpoint, device="cpu")
    bf16 = load_model(tiny_checkpoint, device="cpu", precision="bf16")
    assert bf16.backend.precision == "bf16"
    clip = (random_speechlike(3.0, seed=8), 16_000)
    a, b = fp32.predict(clip, embedding=True), bf16.predict(clip, embedding=True)
    cosine = a.embedding @ b.embedding / (np.linalg.norm(a.embedding) * np.linalg.norm(b.embedding))
    assert cosine > 0.99
    assert not np.array_equal(a.embedding, b.embedding)  # it really ran in reduced precision
    assert list(b.scores) == list(a.scores) and abs(sum(b.scores.values()) - 1) < 1e-6


def test_alibi_bias_equals_funasr(tiny_checkpoint):
    """The bias built from funasr's slopes equals funasr's own bias, scaled and padded."""
    backend = load_backend(tiny_checkpoint, device="cpu")
    enc, transformer = backend.encoder, backend.transformer
    extra, steps = enc.modality_cfg.num_extra_tokens, 37
    theirs = enc.get_alibi_bias(batch_size=1, time_steps=steps, heads=enc.modality_cfg.num_alibi_heads,
                                dtype=torch.float32, device="cpu")
    theirs = torch.nn.functional.pad(theirs * enc.alibi_scale.clamp_min(0).squeeze(0),
                                     (extra, 0, extra, 0, 0, transformer.heads - theirs.size(1)))
    torch.testing.assert_close(transformer.alibi_bias(steps + extra, "cpu"), theirs, rtol=0, atol=0)
    torch.testing.assert_close(transformer.build_alibi_bias(steps + extra, "cpu"), theirs, rtol=0, atol=0)


def test_threads_at_once_give_the_one_at_a_time_results(tiny_checkpoint):
    """Several threads encoding inputs of growing lengths (the cached bias is replaced
    while others read it) get exactly what each gets alone."""
    from concurrent.futures import ThreadPoolExecutor

    backend = load_backend(tiny_checkpoint, device="cpu")
    waves = [backend.prepare(random_speechlike(0.5 + 0.4 * i, seed=i)) for i in range(12)]
    alone = [backend.encode([wave])[0] for wave in waves]
    fresh = load_backend(tiny_checkpoint, device="cpu")  # its bias cache starts empty
    with ThreadPoolExecutor(max_workers=4) as pool:
        together = list(pool.map(lambda wave: fresh.encode([wave])[0], waves))
    for a, b in zip(together, alone):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


def test_window_longer_than_the_maximum_is_refused(tiny_model):
    from emotion2vec_ui import Recognizer
    from emotion2vec_ui.engine.backend import MAX_WINDOW_S
    from emotion2vec_ui.errors import WindowTooLongError

    with pytest.raises(WindowTooLongError, match="longest window"):
        load_model("/nonexistent-folder", window_s=MAX_WINDOW_S + 1)  # refused before loading
    with pytest.raises(WindowTooLongError):
        Recognizer(tiny_model.backend, window_s=300)
    Recognizer(tiny_model.backend, window_s=MAX_WINDOW_S)  # the maximum itself is fine
    with pytest.raises(WindowTooLongError, match="cut it into windows"):
        tiny_model.backend.encode([np.zeros(int((MAX_WINDOW_S + 1) * 16_000), dtype=np.float32)])


def test_cpu_vendor_and_flags_are_read_from_cpuinfo():
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists() or "vendor_id" not in cpuinfo.read_text():
        pytest.skip("no /proc/cpuinfo with a vendor_id here")
    text = cpuinfo.read_text()
    vendor = kernels._cpuinfo()["vendor_id"]
    assert vendor and f"vendor_id\t: {vendor}\n" in text
    assert kernels.cpu_is_intel() == (vendor == "GenuineIntel")
    assert kernels._cpu_flags() and kernels._cpu_flags() <= set(text.split())
