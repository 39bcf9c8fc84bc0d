"""The batch command: inputs from files, folders and manifests, one results table in three
formats, resume after a rerun, a kill -9 and a Ctrl-C, and the Ray engine's rows."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from emotion2vec_ui.audio.testdata import voice_like, write_audio
from emotion2vec_ui.batch.manifest import ManifestError, discover_inputs, input_id
from emotion2vec_ui.batch.run import iter_batch_rows, run_batch
from emotion2vec_ui.batch.table import SCORE_PREFIX, BatchTableError, ResultTable, read_table
from emotion2vec_ui.cli.main import main

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A folder tree of 5 good clips in 3 formats, a non-audio file, and 2 bad inputs beside it."""
    root = tmp_path_factory.mktemp("corpus")
    calls = root / "calls"
    (calls / "day2" / "late").mkdir(parents=True)
    good = [
        write_audio(calls / "a.wav", voice_like(1.5, 16_000, 1, seed=1), 16_000, "wav"),
        write_audio(calls / "b.mp3", voice_like(2.0, 44_100, 2, seed=2), 44_100, "mp3"),
        write_audio(calls / "day2" / "c.flac", voice_like(1.0, 48_000, 1, seed=3), 48_000, "flac"),
        write_audio(calls / "day2" / "late" / "D.WAV", voice_like(2.5, 22_050, 1, seed=4), 22_050, "wav"),
    ]
    (calls / "notes.md").write_text("not audio\n")
    (root / "extra").mkdir()
    extra = write_audio(root / "extra" / "e.ogg", voice_like(1.2, 44_100, 1, seed=5), 44_100, "ogg")
    broken = root / "broken.mp3"
    broken.write_bytes(b"ID3" + b"\x00" * 200)
    manifest = root / "list.txt"
    manifest.write_text("# more calls\nextra/e.ogg\n\nmissing.wav\n")
    return {"root": root, "calls": calls, "good": good + [extra], "broken": broken, "manifest": manifest,
            "missing": root / "missing.wav"}


def model_args(checkpoint) -> list[str]:
    return ["--model", str(checkpoint), "--device", "cpu"]


def rows_by_path(path) -> dict[str, dict]:
    rows = read_table(path).to_pylist()
    assert len({row["path"] for row in rows}) == len(rows), "a path appears twice"
    return {row["path"]: row for row in rows}


def test_files_folders_and_manifest_with_two_bad_inputs(corpus, tiny_checkpoint, tiny_model, tmp_path, capsys):
    out = tmp_path / "results.parquet"
    code = main(["batch", str(corpus["calls"]), str(corpus["manifest"]), str(corpus["broken"]),
                 "--out", str(out), *model_args(tiny_checkpoint)])
    stdout, stderr = capsys.readouterr()
    assert code == 1
    assert stdout.strip().splitlines()[-1].startswith("done 5, skipped 0, failed 2 -> ")
    assert "broken.mp3\tERROR\t" in stderr and "missing.wav\tERROR\t" in stderr

    rows = rows_by_path(out)
    good = {str(p.resolve()) for p in corpus["good"]}
    bad = {str(corpus["broken"].resolve()), str(corpus["missing"].resolve())}
    assert set(rows) == good | bad  # notes.md is not audio: not an input
    assert rows[str(corpus["broken"].resolve())]["error_type"] == "CorruptAudioError"
    assert rows[str(corpus["missing"].resolve())]["error_type"] == "AudioFileNotFoundError"
    for path in bad:
        assert rows[path]["error"] and rows[path]["emotion"] is None and rows[path]["confidence"] is None
    for path in good:
        row = rows[path]
        expected = tiny_model.predict(path)
        assert row["error"] == "" and row["id"] == input_id(path)
        assert row["emotion"] == expected.emotion and row["granularity"] == "utterance" and row["model"] == "tiny"
        scores = {label: row[SCORE_PREFIX + label] for label in tiny_model.labels}
        assert scores == pytest.approx(expected.scores, abs=1e-6)
        assert sum(scores.values()) == pytest.approx(1.0)
        ranked = sorted(scores, key=scores.get, reverse=True)
        assert (row["emotion"], row["second_emotion"]) == (ranked[0], ranked[1])
        assert row["duration_s"] == pytest.approx(expected.duration_s)
        assert row["size_bytes"] == os.path.getsize(path) and "embedding" not in row
    assert not (tmp_path / ".results.parquet.parts").exists()


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl"])
def test_segment_mode_rows_hold_each_speakers_segments(tiny_checkpoint, tiny_model, tmp_path, suffix, capsys):
    """A stereo call through the batch command, one speaker per channel: the row's
    segments are the segment result's, and a mono file's row is a clear error."""
    from emotion2vec_ui.audio.decode import SAMPLE_RATE

    from .speech import stereo_call

    stereo, _ = stereo_call()
    call = write_audio(tmp_path / "call.wav", stereo, SAMPLE_RATE, "wav")
    mono = write_audio(tmp_path / "mono.wav", voice_like(1.5, 16_000, 1, seed=1), 16_000, "wav")
    out = tmp_path / f"calls{suffix}"
    code = main(["batch", str(call), str(mono), "--out", str(out), "--granularity", "segment",
                 "--speakers", "channels", "--embedding", *model_args(tiny_checkpoint)])
    assert code == 1 and "failed 1" in capsys.readouterr().out
    rows = rows_by_path(out)
    assert rows[str(mono)]["error_type"] == "MonoAudioError" and rows[str(mono)]["segments"] is None
    row = rows[str(call)]
    expected = tiny_model.predict(call, granularity="segment", speakers="channels", embedding=True)
    assert row["num_segments"] == len(expected.segments) > 2
    assert {seg["speaker"] for seg in row["segments"]} == {"ch1", "ch2"}
    for got, want in zip(row["segments"], expected.segments, strict=True):
        assert (got["start_s"], got["end_s"], got["speaker"], got["emotion"]) == (
            round(want.start_s, 3), round(want.end_s, 3), want.speaker, want.emotion)
        assert got["confidence"] == pytest.approx(want.confidence, abs=1e-6)
    np.testing.assert_allclose(np.array(row["embedding"]), expected.embedding, atol=1e-5)
    assert row["speech_s"] == pytest.approx(sum(seg.duration_s for seg in expected.segments))
    assert row["segment_settings"].startswith("speakers=channels, vad_threshold=0.5, ")

    # The same table with another speaker mode or VAD setting would keep the old rows as if new.
    for other in (["--speakers", "auto"], ["--speakers", "channels", "--vad-join-gap-s", "0.1"]):
        code = main(["batch", str(call), "--out", str(out), "--granularity", "segment", "--embedding", *other,
                     *model_args(tiny_checkpoint)])
        assert code == 2 and "rerun with those --speakers and --vad-* settings" in capsys.readouterr().err
    assert rows_by_path(out) == rows


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".jsonl"])
def test_frame_results_and_embeddings_in_every_format(corpus, tiny_model, tmp_path, suffix):
    out = tmp_path / f"results{suffix}"
    summary = run_batch(tiny_model, [corpus["calls"], corpus["broken"]], out, "frame", embedding=True)
    assert (summary.done, summary.failed, summary.rows) == (4, 1, 5)
    table = read_table(out)
    # Read back by the format's own tools too, not only by ours.
    if suffix == ".parquet":
        plain = pq.read_table(out).to_pylist()
    elif suffix == ".jsonl":
        plain = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    else:
        csv.field_size_limit(2**31 - 1)
        with open(out, newline="", encoding="utf-8") as f:
            plain = list(csv.DictReader(f))
    assert [row["path"] for row in plain] == table.column("path").to_pylist()
    for row in table.to_pylist():
        if row["error"]:
            assert row["embedding"] is None and row["frame_scores"] is None
            continue
        expected = tiny_model.predict(row["path"], granularity="frame", embedding=True)
        frames = np.array(row["frame_scores"], dtype=np.float32)
        assert row["num_frames"] == len(expected.frame_scores) and frames.shape == expected.frame_scores.shape
        np.testing.assert_allclose(frames, expected.frame_scores, atol=1e-6)
        np.testing.assert_allclose(np.array(row["embedding"]), expected.embedding, atol=1e-6)
        assert row["segments"] == expected.frame_runs(min_duration_s=0.5)
    if suffix != ".parquet":  # the same values as the Parquet table of the same run
        parquet = tmp_path / "same.parquet"
        run_batch(tiny_model, [corpus["calls"], corpus["broken"]], parquet, "frame", embedding=True)
        assert read_table(parquet).drop_columns(["mtime_ns"]).equals(table.drop_columns(["mtime_ns"]))


def test_rerun_skips_done_rows_and_appends_new_and_changed_files(corpus, tiny_model, tmp_path):
    folder = tmp_path / "calls"
    folder.mkdir()
    for i in range(3):
        write_audio(folder / f"c{i}.wav", voice_like(1.0, 16_000, 1, seed=10 + i), 16_000, "wav")
    out = tmp_path / "results.csv"
    first = run_batch(tiny_model, [folder], out)
    assert (first.done, first.skipped, first.rows) == (3, 0, 3)
    before = rows_by_path(out)

    again = run_batch(tiny_model, [folder], out)
    assert (again.done, again.skipped, again.failed, again.rows) == (0, 3, 0, 3)
    assert rows_by_path(out) == before

    write_audio(folder / "c3.wav", voice_like(1.0, 16_000, 1, seed=13), 16_000, "wav")  # a new file
    changed = folder / "c0.wav"  # and one rewritten with other audio
    write_audio(changed, voice_like(2.0, 16_000, 1, seed=99), 16_000, "wav")
    third = run_batch(tiny_model, [folder], out, keep_rows=True)
    assert (third.done, third.skipped, third.rows) == (2, 2, 4)
    assert {row["path"] for row in third.new_rows} == {str((folder / "c3.wav").resolve()), str(changed.resolve())}
    after = rows_by_path(out)
    assert after[str(changed.resolve())]["duration_s"] == pytest.approx(2.0)
    for path in (folder / "c1.wav", folder / "c2.wav"):
        assert after[str(path.resolve())] == before[str(path.resolve())]


def test_failed_inputs_count_on_rerun_and_retry(corpus, tiny_model, tmp_path):
    out = tmp_path / "r.jsonl"
    inputs = [corpus["good"][0], corpus["broken"]]
    assert run_batch(tiny_model, inputs, out).failed == 1
    rerun = run_batch(tiny_model, inputs, out)
    assert (rerun.done, rerun.skipped, rerun.failed) == (0, 2, 1)  # the kept error still counts
    assert "failed 1 (1 of them in earlier runs: --retry-failed redoes those)" in rerun.line
    retry = run_batch(tiny_model, inputs, out, retry_failed=True)
    assert (retry.done, retry.skipped, retry.failed, retry.rows) == (0, 1, 1, 2)


def test_other_settings_into_the_same_table_are_refused(corpus, tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "r.parquet"
    assert main(["batch", str(corpus["good"][0]), "--out", str(out), *model_args(tiny_checkpoint)]) == 0
    code = main(["batch", str(corpus["good"][0]), "--out", str(out), "--granularity", "frame",
                 *model_args(tiny_checkpoint)])
    assert code == 2
    captured = capsys.readouterr()
    assert "written with other settings" in captured.err and "(1 row, " in captured.out
    assert main(["batch", str(corpus["good"][0]), "--out", str(tmp_path / "r.xlsx")]) == 2
    assert ".parquet, .csv, .jsonl" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:  # a flag error ends through the command's parser, with its usage line
        main(["batch", str(corpus["good"][0]), "--out", str(tmp_path / "s.csv"), "--speakers", "2"])
    assert exited.value.code == 2
    assert "--speakers: speakers and speaker names apply to granularity \"segment\" only" in capsys.readouterr().err
    assert not (tmp_path / "s.csv").exists()


def test_another_model_into_the_same_table_is_refused(corpus, tiny_checkpoint, tmp_path, capsys):
    """Same columns, another checkpoint: its rows would sit beside the first model's as if
    comparable, and the done ones would be skipped instead of redone."""
    out = tmp_path / "r.csv"
    other = shutil.copytree(tiny_checkpoint, tmp_path / "tiny_retrained")
    assert main(["batch", str(corpus["good"][0]), "--out", str(out), *model_args(tiny_checkpoint)]) == 0
    capsys.readouterr()
    before = out.read_bytes()
    assert main(["batch", str(corpus["good"][0]), str(corpus["good"][1]), "--out", str(out),
                 *model_args(other)]) == 2
    err = capsys.readouterr().err
    assert f"holds results of model {tiny_checkpoint.name}, not tiny_retrained: rerun with that --model" in err
    assert out.read_bytes() == before and not list(tmp_path.glob(".r.csv*"))
    assert main(["batch", str(corpus["good"][1]), "--out", str(out), *model_args(tiny_checkpoint)]) == 0
    assert len(read_table(out)) == 2


def test_manifests_csv_dedup_and_errors(corpus, tmp_path):
    table = tmp_path / "calls.csv"
    table.write_text(f"speaker,path\nx,{corpus['good'][0]}\ny,{corpus['good'][0]}\n", encoding="utf-8")
    found = discover_inputs([table, corpus["good"][0], corpus["calls"]])
    paths = [item.path for item in found]
    assert len(paths) == len(set(paths)) == 4 and paths[0] == str(corpus["good"][0].resolve())
    no_column = tmp_path / "bad.csv"
    no_column.write_text("file\na.wav\n", encoding="utf-8")
    with pytest.raises(ManifestError, match="'path' column"):
        discover_inputs([no_column])
    assert main(["batch", str(no_column), "--out", str(tmp_path / "r.parquet")]) == 2


def test_rows_without_a_table_and_saved_folders(corpus, tiny_model, tmp_path):
    rows = list(iter_batch_rows(tiny_model, [corpus["good"][0], corpus["broken"]], "frame",
                                save_folders=tmp_path / "outputs"))
    assert [bool(row["error"]) for row in rows] == [False, True]
    folder = Path(rows[0]["output_dir"])
    assert folder.parent == tmp_path / "outputs"
    assert json.loads((folder / "result.json").read_text())["emotion"] == rows[0]["emotion"]


def test_the_command_as_a_user_runs_it(corpus, tiny_checkpoint, tmp_path):
    out = tmp_path / "results.csv"
    command = [sys.executable, "-m", "emotion2vec_ui", "batch", str(corpus["calls"]), str(corpus["manifest"]),
               "--out", str(out), "--save-folders", "--output-dir", str(tmp_path / "folders"), *model_args(tiny_checkpoint)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr
    assert done.stdout.strip().startswith("done 5, skipped 0, failed 1 -> ")
    assert "missing.wav\tERROR\t" in done.stderr
    rows = rows_by_path(out)
    assert len(rows) == 6 and sum(bool(row["error"]) for row in rows.values()) == 1
    folders = sorted(row["output_dir"] for row in rows.values() if not row["error"])
    assert folders == sorted(str(p) for p in (tmp_path / "folders").iterdir())


# -- interrupted runs -----------------------------------------------------------------

MANY_FILES = 160
ROWS_PER_PART = 2


@pytest.fixture(scope="module")
def many_clips(tmp_path_factory):
    """MANY_FILES 1 s WAVs, so a run is still going when its first parts are committed (a run of
    0.3 s clips once ended with exit code 0 although it was sent Ctrl-C; a later cause found: the
    test runner started as a background job, whose children ignored Ctrl-C)."""
    import soundfile as sf

    folder = tmp_path_factory.mktemp("many")
    for i in range(MANY_FILES):
        sf.write(folder / f"clip{i:04d}.wav", voice_like(1.0, 16_000, 1, seed=i)[:, 0], 16_000)
    return folder


def _start_and_wait_for_parts(command: list[str], parts: Path) -> subprocess.Popen:
    """`command` started with Ctrl-C handled as in a terminal (a background job's children ignore
    it), once it has committed two parts."""
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        if parts.is_dir() and len([p for p in parts.iterdir() if p.name.startswith("part-")]) >= 2:
            return process
        time.sleep(0.02)
    process.kill()
    pytest.fail(f"no parts appeared while the run was going: {process.communicate()}")


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the dropped KeyboardInterrupt
def test_a_ctrl_c_python_drops_still_stops_the_run(many_clips, tiny_model, tmp_path):
    """Ctrl-C that lands in a finaliser raises a KeyboardInterrupt Python only prints; the
    run still stops at its next row, committed, and says it was interrupted."""

    class CtrlCWhenCollected:
        def __del__(self):
            signal.raise_signal(signal.SIGINT)

    def on_row(row):
        if not seen:
            CtrlCWhenCollected()  # dropped at once: its __del__ sends Ctrl-C
        seen.append(row)

    seen: list = []
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal (a background job ignores it)
    try:
        summary = run_batch(tiny_model, [many_clips], tmp_path / "results.csv", rows_per_part=1, on_row=on_row)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, inherited)
    assert summary.interrupted and len(seen) == 1
    assert len(rows_by_path(tmp_path / "results.csv")) == 1


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl"])
def test_kill_9_in_the_middle_then_rerun(many_clips, tiny_checkpoint, tmp_path, suffix, capsys):
    out = tmp_path / f"results{suffix}"
    parts = tmp_path / f".{out.name}.parts"
    arguments = ["batch", str(many_clips), "--out", str(out), "--rows-per-part", str(ROWS_PER_PART),
                 *model_args(tiny_checkpoint)]
    process = _start_and_wait_for_parts([sys.executable, "-m", "emotion2vec_ui", *arguments], parts)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert process.returncode == -signal.SIGKILL
    assert not out.exists()  # nothing half-written where the table goes
    finished = ResultTable(out).read().to_pylist()  # every committed part is readable
    assert ROWS_PER_PART <= len(finished) < MANY_FILES

    assert main(arguments) == 0  # the same command again
    stdout = capsys.readouterr().out
    assert f"done {MANY_FILES - len(finished)}, skipped {len(finished)}, failed 0" in stdout  # none redone
    rows = rows_by_path(out)  # no duplicates
    assert len(rows) == MANY_FILES and not parts.exists()
    for row in finished:  # no finished row lost or changed
        assert rows[row["path"]] == row


def test_ctrl_c_commits_the_finished_rows(many_clips, tiny_checkpoint, tiny_model, tmp_path):
    out = tmp_path / "results.csv"
    parts = tmp_path / ".results.csv.parts"
    command = [sys.executable, "-m", "emotion2vec_ui", "batch", str(many_clips), "--out", str(out),
               "--rows-per-part", str(ROWS_PER_PART), *model_args(tiny_checkpoint)]
    process = _start_and_wait_for_parts(command, parts)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, (stdout, stderr[-3000:])
    assert stdout.startswith("interrupted (rerun the same command to go on): ")
    kept = rows_by_path(out)
    assert 2 * ROWS_PER_PART <= len(kept) < MANY_FILES and not parts.exists()
    rerun = run_batch(tiny_model, [many_clips], out)
    assert (rerun.skipped, rerun.done, rerun.rows) == (len(kept), MANY_FILES - len(kept), MANY_FILES)
    assert len(rows_by_path(out)) == MANY_FILES


# -- the Ray engine -------------------------------------------------------------------


def test_missing_ray_says_how_to_install(monkeypatch):
    from emotion2vec_ui.batch.ray_engine import RayUnavailableError, import_ray

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(RayUnavailableError,
                       match=r"pip install 'ray\[data\]' \(or pip install '\.\[ray\]' in the project folder\)"):
        import_ray()


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray of 2 CPUs, shared by this module's Ray tests."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_ray_engine_gives_the_rows_of_the_local_engine(corpus, tiny_checkpoint, tiny_model, tmp_path, local_ray):
    from emotion2vec_ui.batch.ray_engine import run_batch_ray

    inputs = [corpus["calls"], corpus["manifest"], corpus["broken"]]
    local = run_batch(tiny_model, inputs, tmp_path / "local.parquet", "frame", embedding=True)
    remote = run_batch_ray(inputs, tmp_path / "ray.parquet", "frame", embedding=True,
                           model=str(tiny_checkpoint), workers=1, rows_per_part=3)
    uri = run_batch_ray(inputs, f"file://{tmp_path / 'ray_parts'}", model=str(tiny_checkpoint), rows_per_part=3)
    assert (remote.done, remote.failed, remote.rows) == (local.done, local.failed, local.rows) == (5, 2, 7)
    expected, got = rows_by_path(tmp_path / "local.parquet"), rows_by_path(tmp_path / "ray.parquet")
    assert got.keys() == expected.keys()
    for path, row in expected.items():
        other = got[path]
        for column, value in row.items():
            if isinstance(value, float):
                assert other[column] == pytest.approx(value, abs=1e-5), column
            elif column in ("embedding", "frame_scores") and value is not None:
                np.testing.assert_allclose(np.array(other[column]), np.array(value), atol=1e-5)
            elif column != "segments":
                assert other[column] == value, column
    written = pq.read_table(tmp_path / "ray_parts").to_pylist()  # Ray's own Parquet files
    assert (uri.rows, uri.failed) == (7, 2) and sorted(r["path"] for r in written) == sorted(expected)
    for row in written:
        assert row["emotion"] == expected[row["path"]]["emotion"]
    other = shutil.copytree(tiny_checkpoint, tmp_path / "tiny_retrained")
    with pytest.raises(BatchTableError, match="holds results of model .*, not tiny_retrained"):
        run_batch_ray([corpus["good"][0], corpus["missing"]], tmp_path / "ray.parquet", "frame", embedding=True,
                      model=str(other), retry_failed=True)
    assert rows_by_path(tmp_path / "ray.parquet") == got  # nothing of the other model was added


@pytest.mark.slow
def test_ray_actor_computes_on_the_cpus_it_was_given(tiny_checkpoint, local_ray):
    """An actor given one CPU (--cpus-per-worker 1) loads its model on one thread and one
    lane, not on every core of the machine it shares with other actors."""

    @local_ray.remote(num_cpus=1)
    def model_threads(model: str) -> tuple:
        import torch

        from emotion2vec_ui.batch.ray_engine import RecognizerActor

        actor = RecognizerActor(model, {"device": "cpu"}, "utterance", False, None)
        return torch.get_num_threads(), actor.recognizer.backend.lanes

    assert local_ray.get(model_threads.remote(str(tiny_checkpoint))) == (1, 1)
