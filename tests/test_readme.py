"""The README's promises: its Python API snippet runs exactly as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_block_after(heading: str) -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split(heading, 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_python_api_snippet_runs_as_written(tmp_path, tiny_checkpoint, wav_clip):
    snippet = _python_block_after("## Python API")
    assert "load_model()" in snippet and 'model.predict("clip.wav", granularity="frame")' in snippet
    (tmp_path / "clip.wav").write_bytes(wav_clip.read_bytes())
    # The library reads no environment: the one change is the checkpoint, the tiny one the tests build.
    snippet = snippet.replace("load_model()", f"load_model({str(tiny_checkpoint)!r}, device='cpu')")
    env = {"PATH": "/usr/bin:/bin"}
    run = subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    emotion, confidence, scores = run.stdout.split(" ", 2)
    assert emotion in scores and 0 < float(confidence) <= 1


def test_readme_starts_with_the_two_commands():
    first_block = re.search(r"```bash\n(.*?)```", README.read_text(encoding="utf-8"), re.S).group(1)
    commands = [line.split("#")[0].strip() for line in first_block.strip().splitlines()]
    assert commands == ["bash run.sh", "bash run.sh test"]
