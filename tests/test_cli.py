"""The command line: many files, bad files skipped, exit codes, JSON, and a light --help."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from emotion2vec_ui.cli.main import main
from emotion2vec_ui.cli.notices import random_weights_line


@pytest.fixture
def model_env(monkeypatch, tiny_checkpoint):
    monkeypatch.setenv("E2V_MODEL", str(tiny_checkpoint))
    monkeypatch.setenv("E2V_DEVICE", "cpu")


def test_predict_files_with_a_bad_one(model_env, audio_files, tmp_path, capsys):
    bad = tmp_path / "broken.mp3"
    bad.write_bytes(b"ID3" + b"\x00" * 100)
    files = [str(audio_files["mp3-44100-2ch"]), str(bad), str(audio_files["flac-48000-6ch"])]
    code = main(["predict", *files, "--output-dir", str(tmp_path / "out"), "--embedding"])
    out, err = capsys.readouterr()
    assert code == 1
    lines = out.strip().splitlines()
    assert [line.split("\t")[0] for line in lines] == [files[0], files[2]]
    assert "broken.mp3\tERROR\t" in err and "damaged or truncated" in err
    folders = sorted((tmp_path / "out").iterdir())
    assert len(folders) == 2
    for folder in folders:
        assert sorted(p.name for p in folder.iterdir()) == ["embedding.npy", "processed_audio.wav", "result.json"]


def test_all_good_files_exit_zero_with_json(model_env, audio_files, tmp_path, capsys):
    files = [str(audio_files["wav-16000-1ch"]), str(audio_files["ogg-44100-2ch"])]
    code = main(["predict", *files, "--granularity", "frame", "--json", "--output-dir", str(tmp_path)])
    out, _ = capsys.readouterr()
    assert code == 0
    records = [json.loads(line) for line in out.strip().splitlines()]
    assert [r["input"] for r in records] == files
    for record in records:
        assert record["granularity"] == "frame" and len(record["frame_scores"]) == 99
        folder = tmp_path / record["output_dir"].split("/")[-1]
        assert sorted(p.name for p in folder.iterdir()) == ["processed_audio.wav", "result.json"]


def test_json_errors_and_no_save(model_env, tmp_path, capsys):
    code = main(["predict", str(tmp_path / "missing.wav"), "--json", "--no-save", "--output-dir", str(tmp_path / "o")])
    out, _ = capsys.readouterr()
    assert code == 1
    record = json.loads(out)
    assert record["error_type"] == "AudioFileNotFoundError" and "missing.wav" in record["error"]
    assert not (tmp_path / "o").exists()


def test_model_that_cannot_load(tmp_path, capsys):
    code = main(["predict", "x.wav", "--model", str(tmp_path / "nowhere/")])
    assert code == 2
    assert "neither a model folder nor a hub id" in capsys.readouterr().err


def test_build_checkpoint_never_overwrites(tmp_path, capsys):
    folder = tmp_path / "downloaded"
    folder.mkdir()
    (folder / "model.pt").write_bytes(b"real weights")
    assert main(["build-checkpoint", str(folder)]) == 2
    assert "is not empty" in capsys.readouterr().err and (folder / "model.pt").read_bytes() == b"real weights"
    assert main(["build-checkpoint", str(folder / "model.pt")]) == 2
    assert "is a file" in capsys.readouterr().err and sorted(folder.iterdir()) == [folder / "model.pt"]
    (tmp_path / "empty").mkdir()
    assert main(["build-checkpoint", str(tmp_path / "empty")]) == 0
    assert (tmp_path / "empty" / "model.pt").is_file()


@pytest.mark.parametrize("argv, expected", [
    (["--granularity", "segment", "--speakers", "2", "--speaker-names", "a,b,c"],
     "--speaker-names: 3 speaker names given for 2 speakers"),
    (["--granularity", "segment", "--speaker-names", "a,b"], "--speaker-names: 2 speaker names given for 1 speaker;"),
    (["--granularity", "segment", "--speakers", "auto", "--speaker-names", "a,a"], "must be distinct"),
    (["--speaker-names", "agent,customer"], "--speaker-names: speakers and speaker names apply to granularity \"segment\" only"),
    (["--speakers", "channels"], "--speakers: speakers and speaker names apply to granularity \"segment\" only"),
    (["--device", "gpu"], "--device: 'gpu' must be cpu, cuda or cuda:N"),
])
def test_options_that_cannot_fit_are_refused_before_the_model_loads(argv, expected, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["predict", "x.wav", "--model", "/nowhere", *argv])  # a model that would fail to load
    err = capsys.readouterr().err
    assert exited.value.code == 2 and expected in err and "usage: python -m emotion2vec_ui predict" in err


def test_help_does_not_import_torch():
    probe = (
        "import sys\n"
        "from emotion2vec_ui.cli.main import main\n"
        "try:\n    main(['predict', '--help'])\nexcept SystemExit:\n    pass\n"
        "print('heavy:', sorted(m for m in ('torch', 'funasr') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    for expected in ("--granularity {utterance,frame,segment}", "--speakers one|channels|auto|N", "--output-dir DIR"):
        assert expected in out
    assert out.strip().endswith("heavy: []")


def test_module_entry_point(tmp_path, tiny_checkpoint, wav_clip):
    run = subprocess.run(
        [sys.executable, "-m", "emotion2vec_ui", "predict", str(wav_clip), "--model", str(tiny_checkpoint),
         "--device", "cpu", "--output-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stderr
    name, emotion, confidence, display, duration, folder = run.stdout.strip().split("\t")
    assert name == str(wav_clip) and 0 < float(confidence) <= 1 and duration == "3.00s"
    assert (tmp_path / folder.split("/")[-1] / "result.json").is_file()


def test_reader_that_went_away_ends_quietly(tmp_path, tiny_checkpoint, wav_clip):
    """`predict --json | head -1`: once the pipe's reader is gone, the command stops without a traceback."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first result line
    try:
        run = subprocess.run(
            [sys.executable, "-m", "emotion2vec_ui", "predict", str(wav_clip), str(wav_clip), "--json",
             "--model", str(tiny_checkpoint), "--device", "cpu", "--no-save"],
            stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=120,
        )
    finally:
        os.close(write_end)
    assert run.returncode == 141 and run.stderr.strip() == random_weights_line("tiny"), run.stderr  # nothing more


def test_progress_bar_draws_on_stderr(capsys):
    from emotion2vec_ui.cli.progress import ProgressBar as _ProgressBar

    bar = _ProgressBar(width=10)
    bar(0.5, "30 / 60 s of audio")
    bar(1.0, "60 / 60 s of audio")
    bar.clear()
    err = capsys.readouterr().err
    assert "\r[#####-----]  50.0% 30 / 60 s of audio" in err
    assert "\r[##########] 100.0% 60 / 60 s of audio" in err
    assert err.endswith("\r")


def test_ctrl_c_stops_predict_with_a_message_and_whole_folders(tmp_path, tiny_checkpoint, wav_clip):
    """Ctrl-C in a run over many files: exit 130, a line saying how far it got, no traceback,
    and only complete output folders."""
    import signal

    out = tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, "-m", "emotion2vec_ui", "predict", *[str(wav_clip)] * 200, "--model", str(tiny_checkpoint),
         "--device", "cpu", "--output-dir", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as in a terminal
    )
    first_lines = [process.stdout.readline() for _ in range(2)]
    assert all(line.startswith(str(wav_clip)) for line in first_lines), process.communicate()
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr[-3000:]
    folders = list(out.iterdir())
    assert f"interrupted after {len(folders)} of 200 files" in stderr
    assert all((folder / "result.json").is_file() for folder in folders)  # none half-written
    printed = len(first_lines) + len(stdout.splitlines())  # the line of the last saved one may be cut off
    assert printed in (len(folders), len(folders) - 1)


def test_a_short_silent_file_is_recognised_with_warnings(model_env, tmp_path, capsys):
    import numpy as np
    import soundfile as sf

    quiet = tmp_path / "quiet.wav"
    sf.write(quiet, np.zeros(8_000, dtype=np.float32), 16_000)
    assert main(["predict", str(quiet), "--no-save"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith(f"{quiet}\t")
    assert f"{quiet}\tWARNING\t音频很短 Short clip: 0.50 s" in err and f"{quiet}\tWARNING\t几乎无声 Nearly silent" in err
    assert main(["predict", str(quiet), "--no-save", "--json"]) == 0
    out, err = capsys.readouterr()
    assert len(json.loads(out)["warnings"]) == 2 and err == random_weights_line("tiny") + "\n"  # in --json, no more


def test_a_random_weight_model_is_named_once_per_run(model_env, tiny_checkpoint, wav_clip, tmp_path, capsys):
    """build-checkpoint's folders are marked: predict and batch say once, on stderr, that the
    emotions are meaningless; the --json results carry random_weights and model_warning."""
    from emotion2vec_ui.results import RANDOM_WEIGHTS_WARNING

    configuration = json.loads((tiny_checkpoint / "configuration.json").read_text(encoding="utf-8"))
    assert configuration["random_weights"] is True and "meaningless" in configuration["random_weights_note"]
    line = random_weights_line("tiny")
    assert line == f"warning: model tiny: {RANDOM_WEIGHTS_WARNING}"
    assert main(["predict", str(wav_clip), str(wav_clip), "--no-save", "--json"]) == 0
    out, err = capsys.readouterr()
    assert err.splitlines() == [line]
    assert all(json.loads(text)["random_weights"] is True for text in out.splitlines())
    assert main(["batch", str(wav_clip), str(wav_clip), "--out", str(tmp_path / "rows.csv"), "--quiet"]) == 0
    assert capsys.readouterr().err.splitlines() == [line]

    trained = tmp_path / "trained"  # the same folder without the mark, as a downloaded model has none
    shutil.copytree(tiny_checkpoint, trained)
    del configuration["random_weights"], configuration["random_weights_note"]
    (trained / "configuration.json").write_text(json.dumps(configuration), encoding="utf-8")
    assert main(["predict", str(wav_clip), "--no-save", "--json", "--model", str(trained)]) == 0
    out, err = capsys.readouterr()
    data = json.loads(out)
    assert err == "" and "random_weights" not in data and "model_warning" not in data
