"""The wheel, installed the ordinary way, works: built from the source, installed with plain pip
into a fresh virtual environment (torch first, at the tested version, as the CPU-only install
does), and run from there: a checkpoint, segment mode finding two speakers, an ONNX export and
the ONNX backend. The wheel holds every subpackage and data file.

Slow (a few minutes the first time, mostly downloads; pip's cache serves later runs).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from emotion2vec_ui.audio.decode import SAMPLE_RATE
from emotion2vec_ui.audio.testdata import voice_like, write_audio

from .speech import dialogue

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "emotion2vec_ui"
# pip's words when it cannot reach the package index: then the fresh environment cannot be
# built here (no network and nothing in pip's cache), which says nothing about the project.
NO_NETWORK = ("NewConnectionError", "Failed to establish a new connection", "Temporary failure in name resolution",
              "Network is unreachable", "ConnectTimeoutError", "ReadTimeoutError", "No route to host")
INSTALL_TIMEOUT_S = 1200
RUN_TIMEOUT_S = 300


def _pinned_torch() -> str:
    found = re.search(r"^torch==([^\s#]+)", (ROOT / "requirements.txt").read_text(encoding="utf-8"), re.M)
    assert found, "requirements.txt pins torch"
    return found.group(1)


def _env(venv: Path | None = None) -> dict[str, str]:
    """The environment without this test run's Python settings, the fresh venv's bin first on PATH.
    Bytecode is written (the install compiles none): the first command compiles what it imports,
    the later ones reuse it."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONDONTWRITEBYTECODE") and not k.startswith("E2V_")}
    if venv is not None:
        env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        env["VIRTUAL_ENV"] = str(venv)
    return env


def _run(args: list, cwd: Path, env: dict[str, str], timeout: float = RUN_TIMEOUT_S) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _pip_install(python: Path, args: list, cwd: Path, env: dict[str, str]) -> None:
    # --no-compile: the commands compile what they import on first use (see _env); compiling every
    # installed module up front took most of the install's time (3.5 of 5 minutes).
    done = _run([python, "-m", "pip", "install", "--no-compile", "--progress-bar", "off", *args], cwd, env, INSTALL_TIMEOUT_S)
    if done.returncode != 0:
        output = done.stdout + done.stderr
        if any(word in output for word in NO_NETWORK):
            pytest.skip(f"pip cannot reach the package index and its cache lacks what `pip install {' '.join(args)}` needs")
        pytest.fail(f"pip install {' '.join(args)} failed:\n{output[-4000:]}")


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("wheel")


@pytest.fixture(scope="module")
def wheel(work) -> Path:
    """The wheel, built by pip from a copy of the source (the build leaves build/ and egg-info
    behind, which stay out of the project's folder)."""
    source = work / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / PACKAGE, source / PACKAGE, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = work / "dist"
    done = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--progress-bar", "off", "-w", out, source],
                work, _env(), INSTALL_TIMEOUT_S)
    if done.returncode != 0 and any(word in done.stdout + done.stderr for word in NO_NETWORK):
        pytest.skip("pip cannot reach the package index for the build backend (setuptools), nor find it in its cache")
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    (found,) = out.glob("emotion2vec_ui-*.whl")
    return found


@pytest.fixture(scope="module")
def venv(work, wheel) -> Path:
    """A fresh virtual environment (no system site-packages) with the wheel and its onnx extra,
    installed by plain pip: the tested torch first, then the wheel."""
    path = work / "venv"
    made = _run([sys.executable, "-m", "venv", path], work, _env())
    if made.returncode != 0:
        pytest.skip(f"this Python cannot create a virtual environment with pip (python3-venv missing?): {made.stderr[-500:]}")
    python = path / "bin" / "python"
    _pip_install(python, [f"torch=={_pinned_torch()}"], work, _env(path))
    _pip_install(python, [f"{wheel}[onnx]"], work, _env(path))
    return path


@pytest.fixture(scope="module")
def checkpoint(work, venv) -> Path:
    folder = work / "tiny"
    done = _run([venv / "bin" / "emotion2vec-ui", "build-checkpoint", folder, "--size", "tiny"], work, _env(venv))
    assert done.returncode == 0, done.stderr[-3000:]
    return folder


def _wheel_files(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


def test_the_wheel_holds_every_subpackage_and_data_file(wheel):
    files = _wheel_files(wheel)
    source = ROOT / PACKAGE
    packages = [p.parent.relative_to(ROOT).as_posix() for p in source.rglob("__init__.py") if "__pycache__" not in p.parts]
    assert {"emotion2vec_ui/segments", "emotion2vec_ui/engine", "emotion2vec_ui/web", "emotion2vec_ui/cli"} <= set(packages)
    missing = [p for p in packages if f"{p}/__init__.py" not in files]
    assert missing == [], f"subpackages left out of the wheel: {missing}"
    modules = [p.relative_to(ROOT).as_posix() for p in source.rglob("*.py") if "__pycache__" not in p.parts]
    assert sorted(set(modules) - files) == []
    data = [p.relative_to(ROOT).as_posix() for folder in ("assets", "engine/checkpoint_files", "segments/voice_encoder_files")
            for p in (source / folder).iterdir() if p.is_file()]
    assert "emotion2vec_ui/segments/voice_encoder_files/resemblyzer-voice-encoder.npz" in data
    assert "emotion2vec_ui/segments/voice_encoder_files/LICENSE" in data
    assert sorted(set(data) - files) == []


def test_the_install_brings_no_webrtcvad_and_no_resemblyzer(venv, work):
    done = _run([venv / "bin" / "python", "-c",
                 "import importlib.util, json, emotion2vec_ui, torch; "
                 "print(json.dumps([emotion2vec_ui.__file__, torch.__version__, "
                 "[m for m in ('webrtcvad', 'resemblyzer') if importlib.util.find_spec(m)]]))"],
                work, _env(venv))
    assert done.returncode == 0, done.stderr[-3000:]
    where, torch_version, found = json.loads(done.stdout.splitlines()[-1])
    assert Path(where).is_relative_to(venv), f"the package came from {where}, not the fresh environment"
    assert torch_version.split("+")[0] == _pinned_torch()
    assert found == []


def test_segment_mode_finds_two_speakers(venv, checkpoint, work):
    waveform, _ = dialogue([0.5, 0.8, 1.0, 0.8, 0.5], lines=4)  # low, high, low, high
    call = write_audio(work / "two_voices.wav", waveform, SAMPLE_RATE, "wav")
    done = _run([venv / "bin" / "emotion2vec-ui", "predict", call, "--granularity", "segment", "--speakers", "auto",
                 "--model", checkpoint, "--json", "--no-save", "--quiet"], work, _env(venv))
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert [s["speaker"] for s in result["speakers"]] == ["S1", "S2"]
    assert [s["speaker"] for s in result["segments"]] == ["S1", "S2", "S1", "S2"]


def test_onnx_export_and_backend(venv, checkpoint, work):
    exported = work / "onnx"
    done = _run([venv / "bin" / "emotion2vec-ui", "export-onnx", exported, "--model", checkpoint], work, _env(venv))
    assert done.returncode == 0, done.stderr[-3000:]
    clip = write_audio(work / "clip.wav", voice_like(2.0, SAMPLE_RATE, 1, seed=3), SAMPLE_RATE, "wav")
    done = _run([venv / "bin" / "emotion2vec-ui", "predict", clip, "--backend", "onnx", "--model", exported,
                 "--json", "--no-save", "--quiet"], work, _env(venv))
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout)["granularity"] == "utterance"
