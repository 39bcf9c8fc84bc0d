"""The README's promises: its Python API snippet and curl example run as written, and its
command lines, output columns, formats and API names are the code's."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.ui_server import ui_server  # noqa: F401  (a fixture)

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


# -- the command line ----------------------------------------------------------------------

CLI_PREFIXES = (".venv/bin/python -m emotion2vec_ui ", "python -m emotion2vec_ui ", ".venv/bin/emotion2vec-ui ")


def _readme() -> str:
    return README.read_text(encoding="utf-8")


def _cli_commands() -> list[list[str]]:
    """Every command line of the package in the README's bash blocks, as argv after the program."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", _readme(), re.S):
        for line in block.replace("\\\n", " ").splitlines():  # continued lines joined
            line = line.split(" > ")[0].strip()
            for prefix in CLI_PREFIXES:
                if line.startswith(prefix):
                    commands.append(shlex.split(line[len(prefix):]))
    return commands


def test_every_cli_command_in_the_readme_parses():
    from emotion2vec_ui.cli.main import build_parser

    commands = _cli_commands()
    assert {argv[0] for argv in commands} >= {"predict", "build-checkpoint"}
    for argv in commands:
        build_parser().parse_args(argv)  # an unknown command or flag exits (SystemExit)


def test_every_cli_flag_named_in_the_readme_exists():
    """The flags the command line section names in its text (`--json`, `--quiet`, ...)."""
    from emotion2vec_ui.cli.main import build_parser

    section = _readme().split("## Command line", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`(--[a-z][a-z-]*)", section))
    subparsers = next(a for a in build_parser()._actions if a.choices and "predict" in a.choices)
    known = set(subparsers.choices["predict"]._option_string_actions)
    assert {"--json", "--quiet", "--granularity", "--no-save", "--embedding"} <= named
    assert named <= known


def test_cli_output_line_in_the_readme_has_the_real_columns(tmp_path, tiny_checkpoint, wav_clip):
    """The README's sample line and a real frame-mode run have the same tab-separated fields."""
    sample = re.search(r"```\n(call1\.wav\t[^\n]*)\n```", _readme()).group(1)
    run = subprocess.run([sys.executable, "-m", "emotion2vec_ui", "predict", str(wav_clip), "--granularity", "frame",
                          "--model", str(tiny_checkpoint), "--device", "cpu", "--output-dir", str(tmp_path / "outputs")],
                         capture_output=True, text=True, timeout=180, cwd=Path(__file__).resolve().parents[1])
    assert run.returncode == 0, run.stderr
    real = run.stdout.strip().split("\t")
    patterns = [r"\S+\.wav", r"[a-z]+", r"[01]\.\d{3}", r"\S+ \S+ \(\w+\)", r"\d+\.\d\ds", r"\d+ frames, \d+ segments?",
                r"\S*outputs/outputs_\d{8}_\d{6}"]
    for fields in (sample.split("\t"), real):
        assert len(fields) == len(patterns), fields
        for field, pattern in zip(fields, patterns):
            assert re.fullmatch(pattern, field), (field, pattern)


def test_readme_names_the_formats_the_decoder_reads():
    from emotion2vec_ui.audio.formats import ACCEPTED_FORMATS

    web_page = _readme().split("## Web page", 1)[1].split("\n## ", 1)[0]
    assert ACCEPTED_FORMATS in " ".join(web_page.split())


def test_no_internet_section_says_what_the_message_says():
    from emotion2vec_ui.engine.hub import offline_message

    section = _readme().split("## No internet / trying it without the model", 1)[1].split("\n## ", 1)[0]
    message = offline_message("iic/emotion2vec_plus_large", "ms", "https://modelscope.cn", Path("/cache"))
    for hint in ("E2V_HUB=hf", "E2V_MODEL=emotion2vec/emotion2vec_plus_large", "E2V_MODEL=/path/to/emotion2vec_plus_large",
                 "build-checkpoint", "--size tiny", "meaningless"):
        assert hint in section
        assert hint.split("/path/to/")[0] in message


# -- the REST API ----------------------------------------------------------------------------


def test_readme_api_names_exist(tiny_model):
    from emotion2vec_ui.settings import default_settings
    from emotion2vec_ui.web.page import build_demo

    section = _readme().split("## REST API", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r'api_name="/(\w+)"', section)) | set(re.findall(r"/gradio_api/call/(\w+)", section))
    demo = build_demo(tiny_model, default_settings("server"))
    public = {fn.api_name for fn in demo.fns.values() if fn.api_name and fn.api_visibility == "public"}
    assert named == {"predict"} and named <= public


@pytest.mark.skipif(not (shutil.which("curl") and shutil.which("jq")), reason="needs curl and jq")
def test_curl_example_runs_as_written(ui_server, wav_clip, tmp_path):  # noqa: F811
    section = _readme().split("## REST API", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    shutil.copy(wav_clip, tmp_path / "a.wav")
    script = block.replace("URL=http://127.0.0.1:7860", f"URL={ui_server.url.rstrip('/')}")
    run = subprocess.run(["bash", "-c", "set -eo pipefail\n" + script], cwd=tmp_path, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    shown = json.loads(run.stdout)
    assert set(shown) == {"emotion", "confidence", "files"} and 0 < shown["confidence"] <= 1
    assert [url.rsplit("/", 1)[1] for url in shown["files"]] == ["result.json", "processed_audio.wav", "embedding.npy"]
