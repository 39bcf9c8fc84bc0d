"""Offline start: a cached hub model loads without network, an uncached one fails fast with
one message saying what to do. The hub is made unreachable through its client's own
endpoint setting (a `.invalid` host never resolves), so nothing is ever downloaded."""

from __future__ import annotations

import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from emotion2vec_ui.engine.hub import cli_command, hub_reachable, offline_message, require_hub
from emotion2vec_ui.errors import HubUnreachableError, ModelLoadError

REPO = Path(__file__).resolve().parents[1]
UNREACHABLE = "https://hub.invalid"  # RFC 2606: never resolves
HINTS = ("E2V_HUB=hf", "E2V_MODEL=/path", "python -m emotion2vec_ui build-checkpoint DIR --size tiny",
         "E2V_MODEL=DIR", "meaningless")


def test_reachability_is_a_real_connection():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert hub_reachable(f"http://127.0.0.1:{port}")
    assert not hub_reachable(f"http://127.0.0.1:{port}")  # closed: connection refused
    assert not hub_reachable(UNREACHABLE)


def test_require_hub_names_every_way_out(tmp_path):
    with pytest.raises(HubUnreachableError) as caught:
        require_hub("iic/emotion2vec_plus_large", "ms", tmp_path / "cache", endpoint=UNREACHABLE)
    message = str(caught.value)
    assert isinstance(caught.value, ModelLoadError)
    assert message.startswith("cannot reach ModelScope (hub.invalid) to download iic/emotion2vec_plus_large")
    assert str(tmp_path / "cache") in message
    for hint in HINTS:
        assert hint in message


def test_the_suggested_build_checkpoint_command_runs_as_printed(tmp_path):
    """The no-model message names this package's Python (a bare `python` may be the system's,
    without the package, or no command at all) and its line runs as it is, with no venv active."""
    message = offline_message("iic/emotion2vec_plus_large", "ms", UNREACHABLE, tmp_path / "cache")
    command = re.search(r"without the model: (.+ -m emotion2vec_ui build-checkpoint DIR --size tiny), then", message)
    assert command, message
    assert command.group(1) == cli_command("build-checkpoint DIR --size tiny")
    assert shlex.split(command.group(1))[0] != "python" and Path(shlex.split(command.group(1))[0]).name.startswith("python")
    folder = tmp_path / "tiny"
    run = subprocess.run(command.group(1).replace("DIR", shlex.quote(str(folder))), shell=True, cwd=Path.cwd(),
                         env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}, capture_output=True, text=True,
                         timeout=180)
    assert run.returncode == 0, run.stderr
    assert (folder / "model.pt").is_file() and run.stdout.strip() == str(folder)


def _offline_env(tmp_path: Path) -> dict:
    return {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "MODELSCOPE_CACHE": str(tmp_path / "ms"),
            "MODELSCOPE_ENDPOINT": UNREACHABLE, "HF_HOME": str(tmp_path / "hf"), "HF_ENDPOINT": UNREACHABLE}


@pytest.mark.parametrize("program", [["-m", "emotion2vec_ui", "predict", "clip.wav"], ["app.py"]])
def test_uncached_model_without_hub_exits_at_once_with_one_message(tmp_path, wav_clip, program):
    shutil.copy(wav_clip, tmp_path / "clip.wav")
    started = time.monotonic()
    run = subprocess.run([sys.executable, str(REPO / program[0]) if program[0] == "app.py" else program[0], *program[1:],
                          "--model", "iic/emotion2vec_plus_large", "--device", "cpu", "--output-dir", str(tmp_path / "out")],
                         cwd=tmp_path if program[0] != "app.py" else REPO, env={**_offline_env(tmp_path),
                         "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=120)
    print(f"{program[0]} gave up after {time.monotonic() - started:.1f} s")  # about 35 s of retries before
    assert run.returncode == 2, run.stderr
    assert run.stderr.startswith("error: cannot reach ModelScope (hub.invalid) to download iic/emotion2vec_plus_large")
    for hint in HINTS:
        assert hint in run.stderr
    assert "Traceback" not in run.stderr and "NetworkError" not in run.stderr


def test_cached_model_loads_without_the_hub(tmp_path, tiny_checkpoint, wav_clip):
    """A model in ModelScope's cache loads with the hub unreachable (no retries, no download)."""
    shutil.copytree(tiny_checkpoint, tmp_path / "ms" / "models" / "iic" / "emotion2vec_plus_large")
    shutil.copy(wav_clip, tmp_path / "clip.wav")
    run = subprocess.run([sys.executable, "-m", "emotion2vec_ui", "predict", "clip.wav", "--no-save", "--device", "cpu",
                          "--model", "iic/emotion2vec_plus_large"], cwd=tmp_path,
                         env={**_offline_env(tmp_path), "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr
    name, emotion, confidence, *_ = run.stdout.split("\t")
    assert name == "clip.wav" and 0 < float(confidence) <= 1
