"""Output folders: names, contents, collisions, and never a half-written folder."""

from __future__ import annotations

import json
import os
from datetime import datetime

import numpy as np
import pytest
import soundfile as sf

from emotion2vec_ui import load_audio, save_recognition
from emotion2vec_ui.errors import OutputWriteError
from emotion2vec_ui.outputs import folders as outputs_module

NOON = datetime(2026, 5, 17, 12, 0, 5)


def test_folder_contents_utterance(tiny_model, wav_clip, tmp_path):
    audio = load_audio(wav_clip, name="speech.wav")
    result = tiny_model.predict(audio, embedding=True)
    folder = save_recognition(result, audio, tmp_path / "outputs", now=NOON)
    assert folder == tmp_path / "outputs" / "outputs_20260517_120005"
    assert sorted(p.name for p in folder.iterdir()) == ["embedding.npy", "processed_audio.wav", "result.json"]
    waveform, rate = sf.read(folder / "processed_audio.wav", dtype="float32")
    assert rate == 16_000 and waveform.ndim == 1 and sf.info(folder / "processed_audio.wav").subtype == "PCM_16"
    np.testing.assert_allclose(waveform, audio.waveform, atol=1 / 32768)
    np.testing.assert_array_equal(np.load(folder / "embedding.npy"), result.embedding)
    data = json.loads((folder / "result.json").read_text(encoding="utf-8"))
    assert data["emotion"] == result.emotion and data["confidence"] == result.confidence
    assert data["scores"] == result.scores and len(data["scores"]) == 9
    assert data["granularity"] == "utterance" and data["timestamp"] == "2026-05-17T12:00:05"
    assert data["duration_s"] == pytest.approx(3.0) and data["model"] == tiny_model.model_name
    assert data["input"] == "speech.wav" and data["embedding_shape"] == [64]
    assert "frame_scores" not in data


def test_folder_contents_frame_without_embedding(tiny_model, wav_clip, tmp_path):
    audio = load_audio(wav_clip)
    result = tiny_model.predict(audio, granularity="frame")
    folder = save_recognition(result, audio, tmp_path)
    assert sorted(p.name for p in folder.iterdir()) == ["processed_audio.wav", "result.json"]
    data = json.loads((folder / "result.json").read_text(encoding="utf-8"))
    assert data["granularity"] == "frame" and data["frame_hop_s"] == 0.02
    assert data["frame_labels"] == tiny_model.labels
    assert np.array(data["frame_scores"]).shape == result.frame_scores.shape
    np.testing.assert_allclose(data["frame_scores"], result.frame_scores, atol=1e-6)
    assert data["num_frames"] == len(result.frame_scores) and data["segments"]


def test_same_second_gets_distinct_folders_and_nothing_is_overwritten(tiny_model, wav_clip, tmp_path):
    audio = load_audio(wav_clip)
    result = tiny_model.predict(audio)
    existing = tmp_path / "outputs_20260517_120005"
    existing.mkdir()
    (existing / "mine.txt").write_text("user data")
    folders = [save_recognition(result, audio, tmp_path, now=NOON) for _ in range(3)]
    assert [f.name for f in folders] == [
        "outputs_20260517_120005_2", "outputs_20260517_120005_3", "outputs_20260517_120005_4",
    ]
    assert (existing / "mine.txt").read_text() == "user data"
    assert sorted(p.name for p in existing.iterdir()) == ["mine.txt"]


def test_a_failed_save_leaves_nothing_behind(tiny_model, wav_clip, tmp_path, monkeypatch):
    audio = load_audio(wav_clip)
    result = tiny_model.predict(audio, embedding=True)

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(outputs_module.np, "save", disk_full)
    with pytest.raises(OutputWriteError, match="No space left"):
        save_recognition(result, audio, tmp_path, now=NOON)
    assert list(tmp_path.iterdir()) == []


def test_frame_scores_are_one_row_per_line(tiny_model, wav_clip, tmp_path):
    result = tiny_model.predict(wav_clip, granularity="frame")
    folder = save_recognition(result, load_audio(wav_clip), tmp_path)
    lines = (folder / "result.json").read_text(encoding="utf-8").splitlines()
    rows = [line for line in lines if line.startswith("    [")]
    assert len(rows) == len(result.frame_scores)


def test_audio_beyond_full_scale_is_kept_as_float_and_old_float_files_still_load(tiny_model, tmp_path):
    loud = np.sin(np.arange(16_000, dtype=np.float32) * 0.01) * 1.5  # (N,) peaks at 1.5
    result = tiny_model.predict((loud, 16_000))
    folder = save_recognition(result, loud, tmp_path)
    assert sf.info(folder / "processed_audio.wav").subtype == "FLOAT"
    np.testing.assert_array_equal(load_audio(folder / "processed_audio.wav").waveform, loud)


def test_folders_and_files_follow_the_umask(tiny_model, wav_clip, tmp_path):
    audio = load_audio(wav_clip)
    result = tiny_model.predict(audio, embedding=True)
    old = os.umask(0o077)
    try:
        folder = save_recognition(result, audio, tmp_path)
    finally:
        os.umask(old)
    assert folder.stat().st_mode & 0o777 == 0o700
    assert {p.stat().st_mode & 0o777 for p in folder.iterdir()} == {0o600}


def test_a_nearly_full_disk_is_refused_before_any_work(tmp_path):
    outputs_module.check_free_space(tmp_path / "new", 1)
    with pytest.raises(OutputWriteError, match="disk is nearly full"):
        outputs_module.check_free_space(tmp_path, 2**62)


KILLED_MID_SAVE = """
import os, signal, sys
import numpy as np
from emotion2vec_ui import load_model, save_recognition
from emotion2vec_ui.outputs import folders as outputs
model = load_model(sys.argv[1], device="cpu", warm_up=False)
result = model.predict(sys.argv[2], embedding=True)
outputs.np.save = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)  # dies half-way through the save
save_recognition(result, np.zeros(16_000, dtype=np.float32), sys.argv[3])
"""


def test_a_save_killed_half_way_is_swept_at_the_next_start(tiny_checkpoint, wav_clip, tmp_path):
    import signal
    import subprocess
    import sys

    from emotion2vec_ui.cli.main import main

    out = tmp_path / "outputs"
    done = subprocess.run([sys.executable, "-c", KILLED_MID_SAVE, str(tiny_checkpoint), str(wav_clip), str(out)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stderr
    (left,) = out.iterdir()
    assert left.name.startswith(".incomplete_") and (left / "processed_audio.wav").exists()
    in_progress = out / f".incomplete_{os.getpid()}_0123"  # this live process's save: kept
    in_progress.mkdir()
    assert main(["predict", str(wav_clip), "--model", str(tiny_checkpoint), "--device", "cpu",
                 "--output-dir", str(out), "--quiet"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert len(names) == 2 and names[0] == in_progress.name and names[1].startswith("outputs_")
