"""ONNX export (encoder + head) and the ONNX Runtime backend: equal to the torch path, no torch at run time."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading

import numpy as np
import pytest

from emotion2vec_ui import load_model
from emotion2vec_ui.cli.main import main
from emotion2vec_ui.engine.backend import cpu_threads
from emotion2vec_ui.engine.hub import cli_command
from emotion2vec_ui.engine.onnx_backend import MANIFEST, OnnxBackend, load_onnx_backend
from emotion2vec_ui.errors import ModelLoadError

from .conftest import random_speechlike

TOLERANCE = 1e-4  # ONNX Runtime vs torch, float32: only the summation order differs
INT8_MIN_COSINE = 0.99  # int8 export vs float32, per clip mean embedding (tiny random model)
LENGTHS_S = (3.0, 0.7, 1.9, 0.03)  # a padded batch: long, short, middle, one frame


@pytest.fixture(scope="module")
def onnx_folder(tiny_checkpoint, tmp_path_factory):
    from emotion2vec_ui.engine.onnx_export import export_onnx

    return export_onnx(tmp_path_factory.mktemp("onnx") / "tiny-fp32", str(tiny_checkpoint))


@pytest.fixture(scope="module")
def onnx_int8_folder(tiny_checkpoint, tmp_path_factory):
    from emotion2vec_ui.engine.onnx_export import export_onnx

    return export_onnx(tmp_path_factory.mktemp("onnx") / "tiny-int8", str(tiny_checkpoint), int8=True)


@pytest.fixture(scope="module")
def onnx_model(onnx_folder):
    return load_model(onnx_folder, backend="onnx")


def test_export_writes_encoder_head_and_manifest(onnx_folder, tiny_model):
    assert sorted(p.name for p in onnx_folder.iterdir()) == sorted(["encoder.onnx", "head.onnx", MANIFEST])
    manifest = json.loads((onnx_folder / MANIFEST).read_text())
    assert manifest["labels"] == tiny_model.labels and manifest["precision"] == "fp32"
    assert manifest["conv_layers"] == [list(layer) for layer in tiny_model.backend.geometry.conv_layers]


def test_an_export_of_a_random_weight_checkpoint_stays_marked(onnx_folder, onnx_model, tmp_path):
    manifest = json.loads((onnx_folder / MANIFEST).read_text())
    assert manifest["random_weights"] is True and onnx_model.random_weights is True
    assert onnx_model.predict((random_speechlike(1.0), 16_000)).to_dict()["random_weights"] is True
    earlier = tmp_path / "earlier"  # an export from before the mark reads as a trained model's
    shutil.copytree(onnx_folder, earlier)
    del manifest["random_weights"]
    (earlier / MANIFEST).write_text(json.dumps(manifest))
    assert load_onnx_backend(earlier).random_weights is False


def test_padded_batch_equals_torch(onnx_model, tiny_model):
    torch_backend, onnx_backend = tiny_model.backend, onnx_model.backend
    waves = [torch_backend.prepare(random_speechlike(s, seed=i)) for i, s in enumerate(LENGTHS_S)]
    for ours, theirs in zip(onnx_backend.encode(waves), torch_backend.encode(waves)):
        assert ours.shape == theirs.shape
        np.testing.assert_allclose(ours, theirs, atol=TOLERANCE, rtol=0)
    features = torch_backend.encode(waves[:1])[0]
    np.testing.assert_allclose(onnx_backend.logits(features), torch_backend.logits(features), atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize("granularity", ["utterance", "frame"])
def test_predict_batch_equals_torch(onnx_model, tiny_model, granularity):
    clips = [(random_speechlike(s, seed=10 + i), 16_000) for i, s in enumerate(LENGTHS_S)]
    ours = onnx_model.predict_batch(clips, granularity=granularity, embedding=True)
    theirs = tiny_model.predict_batch(clips, granularity=granularity, embedding=True)
    for a, b in zip(ours, theirs):
        assert a.emotion == b.emotion and list(a.scores) == list(b.scores)
        np.testing.assert_allclose(list(a.scores.values()), list(b.scores.values()), atol=TOLERANCE)
        np.testing.assert_allclose(a.embedding, b.embedding, atol=TOLERANCE, rtol=0)
        if granularity == "frame":
            np.testing.assert_allclose(a.frame_scores, b.frame_scores, atol=TOLERANCE)


@pytest.mark.skipif(cpu_threads() < 2, reason="two lanes need two cores")
def test_lanes_run_batches_side_by_side_in_threads_of_their_own(onnx_folder, onnx_model):
    laned = load_model(onnx_folder, backend="onnx", lanes=2)
    threads = cpu_threads()
    assert laned.backend.lanes == 2 and laned.backend.lane_threads() == [threads // 2] * 2
    assert onnx_model.backend.lanes == 1 and onnx_model.backend.lane_threads() == []
    calls = []  # (thread name, the session encode runs on) per batch
    encode = laned.backend.encode

    def noted_encode(waves):
        calls.append((threading.current_thread().name, getattr(laned.backend._lane, "session", None)))
        return encode(waves)

    laned.backend.encode = noted_encode
    clips = [(random_speechlike(s, seed=20 + i), 16_000) for i, s in enumerate([2.0, 5.0, 9.0, 3.5])]
    ours = laned.predict_batch(clips, granularity="frame", embedding=True)
    assert len(calls) >= 2 and all(name.startswith("e2v-onnx-lane") for name, _ in calls)
    assert all(any(session is own for own in laned.backend._lane_sessions) for _, session in calls)
    for a, b in zip(ours, onnx_model.predict_batch(clips, granularity="frame", embedding=True)):
        np.testing.assert_allclose(a.embedding, b.embedding, atol=1e-5, rtol=0)
        np.testing.assert_allclose(a.frame_scores, b.frame_scores, atol=1e-5)
    with pytest.raises(ModelLoadError, match=f"more than the {threads} threads"):
        load_model(onnx_folder, backend="onnx", lanes=threads + 1)


def test_lanes_of_one_thread_share_one_session(onnx_folder, onnx_model):
    """A one-thread session runs each call on its caller's thread, so such lanes share one session
    (one copy of the weights), and calls from the lanes at once each get their own features;
    lanes of more threads have a session each."""
    one_each = OnnxBackend(onnx_folder, threads=2, lanes=2)
    assert one_each.lane_threads() == [1, 1] and one_each._lane_sessions[0] is one_each._lane_sessions[1]
    assert one_each._lane_sessions[0] is not one_each.session
    waves = [one_each.prepare(random_speechlike(s, seed=30 + i)) for i, s in enumerate([2.5, 1.2, 3.0, 0.6])]
    started = [one_each.run_in_lane(one_each.encode, [wave]) for wave in waves]  # all at once
    for future, wave in zip(started, waves):
        np.testing.assert_allclose(future.result()[0], onnx_model.backend.encode([wave])[0], atol=1e-5, rtol=0)
    two_each = OnnxBackend(onnx_folder, threads=4, lanes=2)
    assert two_each.lane_threads() == [2, 2] and two_each._lane_sessions[0] is not two_each._lane_sessions[1]


def test_int8_export_stays_close(onnx_int8_folder, tiny_model):
    backend = load_onnx_backend(onnx_int8_folder)
    assert backend.precision == "int8"
    waves = [tiny_model.backend.prepare(random_speechlike(s, seed=i)) for i, s in enumerate(LENGTHS_S[:3])]
    for ours, theirs in zip(backend.encode(waves), tiny_model.backend.encode(waves)):
        a, b = ours.mean(0), theirs.mean(0)
        assert a @ b / (np.linalg.norm(a) * np.linalg.norm(b)) >= INT8_MIN_COSINE
        assert not np.allclose(ours, theirs, atol=TOLERANCE)  # it really is quantised


def test_int8_export_has_7_bit_weights(onnx_int8_folder):
    """Full-range int8 weights saturate ONNX Runtime's AVX2 (non-VNNI) kernel; 7 bits do not."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(onnx_int8_folder / "encoder.onnx")).graph
    weights = [numpy_helper.to_array(t) for t in graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert weights
    assert max(int(np.abs(w.astype(np.int16)).max()) for w in weights) <= 64


def test_runs_without_torch_or_funasr(onnx_folder, wav_clip):
    script = (
        "import sys\n"
        "from emotion2vec_ui import load_model\n"
        f"model = load_model({str(onnx_folder)!r}, backend='onnx')\n"
        f"result = model.predict({str(wav_clip)!r}, granularity='frame')\n"
        "heavy = sorted(m for m in ('torch', 'funasr', 'torchaudio') if m in sys.modules)\n"
        "print(result.emotion, len(result.frame_scores), heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    emotion, frames, heavy = out.split(maxsplit=2)
    assert heavy.strip() == "[]" and int(frames) == 149


def test_folder_that_is_not_an_export(tiny_checkpoint):
    with pytest.raises(ModelLoadError, match="export-onnx"):
        load_model(tiny_checkpoint, backend="onnx")


def test_cli_exports_and_predicts(tiny_checkpoint, wav_clip, tmp_path, capsys):
    folder = tmp_path / "exported"
    assert main(["export-onnx", str(folder), "--model", str(tiny_checkpoint)]) == 0
    assert main(["predict", str(wav_clip), "--backend", "onnx", "--model", str(folder), "--no-save", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    expected = load_model(tiny_checkpoint).predict(str(wav_clip))
    assert result["emotion"] == expected.emotion
    assert abs(result["confidence"] - expected.confidence) < TOLERANCE


def test_options_that_do_not_fit_the_onnx_backend_are_refused(onnx_folder, tiny_checkpoint, capsys):
    with pytest.raises(ModelLoadError, match="precision 'int8' does not apply to the onnx backend"):
        load_model(onnx_folder, backend="onnx", precision="int8")
    assert main(["predict", "x.wav", "--backend", "onnx"]) == 2  # no --model: the default is a hub id
    assert (f"needs as its model a folder written by {cli_command('export-onnx DIR')} (--model DIR"
            in capsys.readouterr().err)  # the Python that runs the package, as in .venv/bin/python -m ...
    assert main(["predict", "x.wav", "--model", str(onnx_folder), "--device", "cpu"]) == 2  # torch backend
    assert "written by export-onnx: run it with --backend onnx" in capsys.readouterr().err


def test_unknown_backend(onnx_folder):
    with pytest.raises(ModelLoadError, match="unknown backend 'tensorrt'"):
        load_model(onnx_folder, backend="tensorrt")


def test_export_never_overwrites(onnx_folder, tiny_checkpoint, tmp_path, capsys):
    """A folder with anything in it, a file, or an earlier export is refused and left as it was."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "head.onnx").write_text("my own file")
    as_file = tmp_path / "notes.txt"
    as_file.write_text("notes")
    before = {p.name: p.read_bytes() for p in onnx_folder.iterdir()}
    for target, message in ((mine, "is not empty"), (as_file, "is a file"), (onnx_folder, "is not empty")):
        assert main(["export-onnx", str(target), "--model", str(tiny_checkpoint)]) == 2
        assert message in capsys.readouterr().err
    assert (mine / "head.onnx").read_text() == "my own file" and as_file.read_text() == "notes"
    assert {p.name: p.read_bytes() for p in onnx_folder.iterdir()} == before
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["export-onnx", str(empty), "--model", str(tiny_checkpoint)]) == 0
    assert sorted(p.name for p in empty.iterdir()) == sorted(["encoder.onnx", "head.onnx", MANIFEST])


def test_failed_export_leaves_nothing(onnx_folder, tiny_checkpoint, tmp_path, capsys, monkeypatch):
    from emotion2vec_ui.engine import onnx_export

    target = tmp_path / "out" / "export"
    assert main(["export-onnx", str(target), "--model", str(tmp_path / "no-such-model")]) == 2
    assert "neither a model folder nor a hub id" in capsys.readouterr().err
    assert main(["export-onnx", str(target), "--model", str(onnx_folder)]) == 2
    assert "already an exported ONNX folder" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()

    def disk_full(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(onnx_export, "_export_head", disk_full)
    with pytest.raises(OSError, match="cannot write the export .*No space left on device"):
        onnx_export.export_onnx(target, str(tiny_checkpoint))
    assert list((tmp_path / "out").iterdir()) == []  # neither the export nor its staging folder


@pytest.mark.parametrize("damage, message", [
    (lambda m: "{not json", "cannot be read as JSON"),
    (lambda m: json.dumps([1, 2]), "not an export manifest"),
    (lambda m: json.dumps({k: v for k, v in m.items() if k != "encoder"}), "lacks encoder"),
    (lambda m: json.dumps({**m, "conv_layers": [[10]]}), "malformed field"),
    (lambda m: json.dumps({**m, "format": 99}), "format 99"),
])
def test_damaged_manifest_is_named(onnx_folder, tmp_path, capsys, damage, message):
    folder = tmp_path / "copy"
    shutil.copytree(onnx_folder, folder)
    manifest = json.loads((folder / MANIFEST).read_text())
    (folder / MANIFEST).write_text(damage(manifest))
    with pytest.raises(ModelLoadError, match=message):
        load_onnx_backend(folder)
    assert main(["predict", "x.wav", "--backend", "onnx", "--model", str(folder)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_export_folder_has_the_usual_permissions(onnx_folder, tmp_path):
    """Readable by others as any new folder is (under the umask), not owner-only like a temporary folder."""
    probe = tmp_path / "probe"
    probe.mkdir()
    assert onnx_folder.stat().st_mode & 0o777 == probe.stat().st_mode & 0o777
