"""The docs site's promises: every page is in mkdocs.yml's nav and the site builds strictly; its
examples run as written; its commands, flags, settings tables, exit codes, error types, table
columns, module lists and layering contract are the code's."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.ui_server import ui_server  # noqa: F401  (a fixture)

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
PACKAGE = ROOT / "emotion2vec_ui"


def page(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def section(text: str, heading: str) -> str:
    """The text under `heading` (a whole line), up to the next heading of the same or a higher level."""
    level = len(heading) - len(heading.lstrip("#"))
    body = text.split(heading + "\n", 1)[1]
    end = re.search(rf"^#{{1,{level}}} ", body, re.M)
    return body[:end.start()] if end else body


def code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"^ *```{language}\n(.*?)^ *```", text, re.S | re.M)


def all_markdown() -> dict[str, str]:
    """README.md and every docs page, by path relative to the repository."""
    files = [README, *sorted(DOCS.rglob("*.md"))]
    return {str(path.relative_to(ROOT)): path.read_text(encoding="utf-8") for path in files}


# -- the site -----------------------------------------------------------------------------------


def _nav_pages(nav) -> list[str]:
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, dict):
        return [p for value in nav.values() for p in _nav_pages(value)]
    return [p for item in nav for p in _nav_pages(item)]


def test_every_docs_page_is_in_the_nav_and_every_nav_entry_exists():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    nav = _nav_pages(config["nav"])
    pages = sorted(str(path.relative_to(DOCS)) for path in DOCS.rglob("*.md"))
    assert sorted(nav) == pages
    assert len(nav) == len(set(nav))


def test_the_site_builds_strictly(tmp_path):
    mkdocs = Path(sys.executable).with_name("mkdocs")
    if not mkdocs.exists():
        pytest.fail("mkdocs is missing: pip install mkdocs-material (requirements-test.txt)")
    run = subprocess.run([str(mkdocs), "build", "--strict", "--site-dir", str(tmp_path / "site")], cwd=ROOT,
                         capture_output=True, text=True, timeout=300, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert run.returncode == 0, run.stderr[-3000:]


def test_every_module_or_script_path_named_exists():
    for name, text in all_markdown().items():
        for path in re.findall(r"(?<![\w/.])((?:emotion2vec_ui|bench|tests)/[\w/]+\.(?:py|md))", text):
            assert (ROOT / path).exists(), f"{name} names {path}, which does not exist"


# -- commands and flags --------------------------------------------------------------------------

CLI_PREFIXES = (".venv/bin/python -m emotion2vec_ui ", "python -m emotion2vec_ui ", ".venv/bin/emotion2vec-ui ")
APP_PREFIXES = (".venv/bin/python app.py ", "python app.py ")


def _command_lines(text: str) -> list[str]:
    """Every line of the markdown's bash blocks, continued lines joined, environment assignments and redirections dropped."""
    lines = []
    for block in code_blocks(text, "bash"):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" > ")[0].split(" #")[0].strip()
            while re.match(r"^[A-Z_0-9]+=\S+ ", line):
                line = line.split(" ", 1)[1]
            lines.append(line)
    return lines


def cli_commands(text: str) -> list[list[str]]:
    """Every command line of the package in the markdown's bash blocks, as argv after the program."""
    return [shlex.split(line[len(prefix):]) for line in _command_lines(text) for prefix in CLI_PREFIXES
            if line.startswith(prefix)]


def app_commands(text: str) -> list[list[str]]:
    return [shlex.split(line[len(prefix):]) for line in _command_lines(text) for prefix in APP_PREFIXES
            if line.startswith(prefix)]


def app_parser():
    import argparse

    from emotion2vec_ui.settings import add_options

    parser = argparse.ArgumentParser(prog="python app.py")
    add_options(parser, "server")  # what app.py's parser holds (importing app.py would load the model)
    return parser


def _subparsers():
    from emotion2vec_ui.cli.main import build_parser

    return next(a for a in build_parser()._actions if a.choices and "predict" in a.choices).choices


def test_every_command_in_the_docs_parses():
    from emotion2vec_ui.cli.main import build_parser

    texts = {name: text for name, text in all_markdown().items() if name != "README.md"}
    commands = [argv for text in texts.values() for argv in cli_commands(text)]
    assert {argv[0] for argv in commands} >= {"predict", "batch", "build-checkpoint"}
    for argv in commands:
        build_parser().parse_args(argv)  # an unknown command or flag exits (SystemExit)
    for text in texts.values():
        for argv in app_commands(text):
            app_parser().parse_args(argv)


def _bench_flags() -> set[str]:
    return {flag for path in (ROOT / "bench").glob("*.py")
            for flag in re.findall(r"""["'](--[a-z][a-z0-9-]*)["']""", path.read_text(encoding="utf-8"))}


OTHER_TOOLS_FLAGS = {"--head", "--index-url", "--strict", "--site-dir"}  # ray start, pip, mkdocs


def test_every_flag_named_in_the_docs_exists():
    """Each `--flag` the pages name is a flag of the package's commands, of app.py, or of a bench script."""
    known = {flag for parser in _subparsers().values() for flag in parser._option_string_actions}
    known |= set(app_parser()._option_string_actions) | _bench_flags() | OTHER_TOOLS_FLAGS
    for name, text in all_markdown().items():
        named = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*[a-z0-9])(?![\w*-])", text))  # not `--vad-*`
        assert named <= known, f"{name}: {sorted(named - known)}"


def test_the_cli_pages_predict_flags_are_predicts():
    named = set(re.findall(r"`(--[a-z][a-z-]*)", section(page("cli.md"), "## predict")))
    assert {"--json", "--quiet", "--granularity", "--no-save", "--embedding", "--speakers", "--speaker-names"} <= named
    assert named <= set(_subparsers()["predict"]._option_string_actions)


def test_cli_output_line_on_the_cli_page_has_the_real_columns(tmp_path, tiny_checkpoint, wav_clip):
    """The page's sample line and a real frame-mode run have the same tab-separated fields."""
    sample = re.search(r"```\n(call1\.wav\t[^\n]*)\n```", page("cli.md")).group(1)
    run = subprocess.run([sys.executable, "-m", "emotion2vec_ui", "predict", str(wav_clip), "--granularity", "frame",
                          "--model", str(tiny_checkpoint), "--device", "cpu", "--output-dir", str(tmp_path / "outputs")],
                         capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    real = run.stdout.strip().split("\t")
    patterns = [r"\S+\.wav", r"[a-z]+", r"[01]\.\d{3}", r"\S+ \S+ \(\w+\)", r"\d+\.\d\ds", r"\d+ frames, \d+ segments?",
                r"\S*outputs/outputs_\d{8}_\d{6}"]
    for fields in (sample.split("\t"), real):
        assert len(fields) == len(patterns), fields
        for field, pattern in zip(fields, patterns):
            assert re.fullmatch(pattern, field), (field, pattern)


def test_the_exit_code_table_is_the_codes():
    from emotion2vec_ui.cli import exit_codes

    table = section(page("cli.md"), "## Exit codes")
    documented = {int(code) for code in re.findall(r"^\| (\d+) \|", table, re.M)}
    defined = {value for name, value in vars(exit_codes).items() if name.startswith("EXIT_")}
    assert documented == defined


@pytest.mark.parametrize(("program", "name"), [("cli", "cli.md"), ("server", "server.md")])
def test_the_settings_tables_are_the_settings(program, name):
    from emotion2vec_ui.settings import settings_table

    assert settings_table(program) in section(page(name), "## Settings"), (
        f"docs/{name}'s settings table differs; paste settings.settings_table({program!r})"
    )


# -- the pages' facts ------------------------------------------------------------------------------


def test_the_web_page_names_the_formats_the_decoder_reads():
    from emotion2vec_ui.audio.formats import ACCEPTED_FORMATS

    assert ACCEPTED_FORMATS in " ".join(section(page("web.md"), "## The page").split())


def test_the_pages_buttons_are_named_as_the_page_names_them():
    from emotion2vec_ui.web import batch, views

    assert views.RUN_LABEL in section(page("web.md"), "## The page") and views.RUN_LABEL in README.read_text("utf-8")
    assert views.EXAMPLE_LABEL in section(page("web.md"), "## The page")
    assert batch.RUN_LABEL in section(page("batch.md"), "## In the page: 批量处理 Batch")


def test_offline_page_says_what_the_message_says():
    from emotion2vec_ui.engine.hub import offline_message

    text = section(page("offline.md"), "## No internet / trying it without the model")
    message = offline_message("iic/emotion2vec_plus_large", "ms", "https://modelscope.cn", Path("/cache"))
    for hint in ("E2V_HUB=hf", "E2V_MODEL=emotion2vec/emotion2vec_plus_large", "E2V_MODEL=/path/to/emotion2vec_plus_large",
                 "build-checkpoint", "--size tiny", "meaningless"):
        assert hint in text
        assert hint.split("/path/to/")[0] in message


def test_the_python_page_names_every_error_type_and_which_the_package_exports():
    import emotion2vec_ui
    from emotion2vec_ui import errors

    text = section(page("python.md"), "## Errors")
    types = [name for name, value in vars(errors).items()
             if isinstance(value, type) and issubclass(value, Exception) and value.__module__ == errors.__name__]
    for name in types:
        assert f"`{name}`" in text, name
    assert "the package exports every one of them" in " ".join(text.split())
    assert [name for name in types if name not in emotion2vec_ui.__all__] == []


def test_the_batch_page_names_the_tables_columns():
    from emotion2vec_ui.batch.table import table_schema

    text = " ".join(re.search(r"- \*\*The table\*\*(.*?)\n- ", page("batch.md"), re.S).group(1).split())
    named = set(re.findall(r"`(\w+)`", text)) - {"score_"}
    columns = {name for granularity in ("utterance", "frame", "segment")
               for name in table_schema(["happy"], granularity, True).names if not name.startswith("score_")}
    assert "`score_<label>`" in text
    assert named == columns


def test_the_api_names_in_the_docs_exist(tiny_model):
    from emotion2vec_ui.settings import default_settings
    from emotion2vec_ui.web.page import build_demo

    named = set()
    for text in all_markdown().values():
        named |= set(re.findall(r'api_name="/(\w+)"', text)) | set(re.findall(r"/gradio_api/call/(\w+)", text))
    demo = build_demo(tiny_model, default_settings("server"))
    public = {fn.api_name for fn in demo.fns.values() if fn.api_name and fn.api_visibility == "public"}
    assert named == {"predict", "predict_batch"} and named <= public


# -- examples, run as written --------------------------------------------------------------------


def run_python_example(snippet: str, folder, checkpoint, clip) -> None:
    """Run a Python API example as written, on `clip` copied to clip.wav, with the tests' tiny checkpoint."""
    (folder / "clip.wav").write_bytes(clip.read_bytes())
    # The library reads no E2V_ variable: the one change is the checkpoint, the tiny one the tests build.
    snippet = snippet.replace("load_model()", f"load_model({str(checkpoint)!r}, device='cpu')")
    run = subprocess.run([sys.executable, "-c", snippet], cwd=folder, env={"PATH": "/usr/bin:/bin"},
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    emotion, confidence, scores = run.stdout.split(" ", 2)
    assert emotion in scores and 0 < float(confidence) <= 1


def test_the_python_pages_example_runs_as_written(tmp_path, tiny_checkpoint, wav_clip):
    snippet = code_blocks(page("python.md"), "python")[0]
    assert "load_model()" in snippet and 'model.predict("clip.wav", granularity="frame")' in snippet
    run_python_example(snippet, tmp_path, tiny_checkpoint, wav_clip)


@pytest.mark.skipif(not (shutil.which("curl") and shutil.which("jq")), reason="needs curl and jq")
def test_the_curl_example_runs_as_written(ui_server, wav_clip, tmp_path):  # noqa: F811
    block = code_blocks(section(page("web.md"), "## REST API"), "bash")[0]
    shutil.copy(wav_clip, tmp_path / "a.wav")
    script = block.replace("URL=http://127.0.0.1:7860", f"URL={ui_server.url.rstrip('/')}")
    run = subprocess.run(["bash", "-c", "set -eo pipefail\n" + script], cwd=tmp_path, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    shown = json.loads(run.stdout)
    assert set(shown) == {"emotion", "confidence", "files"} and 0 < shown["confidence"] <= 1
    assert [url.rsplit("/", 1)[1] for url in shown["files"]] == ["result.json", "processed_audio.wav", "embedding.npy"]


def test_the_predict_batch_example_runs_as_written(ui_server, tmp_path):  # noqa: F811
    from emotion2vec_ui.audio.testdata import voice_like, write_audio
    from tests.test_ui_batch import clip, make_zip

    snippet = code_blocks(section(page("batch.md"), "## REST: predict_batch"), "python")[0]
    assert 'api_name="/predict_batch"' in snippet
    clip(tmp_path, "a.wav")
    write_audio(tmp_path / "b.mp3", voice_like(2.0, 16_000, 1, seed=3), 16_000, "mp3")
    make_zip(tmp_path / "calls.zip", {"day1/c.wav": clip(tmp_path, "c.wav", seed=4).read_bytes(), "notes.txt": b"x"})
    snippet = snippet.replace("http://127.0.0.1:7860/", ui_server.url)
    run = subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    lines = [line for line in run.stdout.splitlines() if not line.startswith("Loaded as API")]  # the client's own
    assert lines[0].startswith("3 recognised, 1 failed:") and lines[0].endswith(".zip")
    assert [line.split(" ")[0] for line in lines[1:]] == ["a.wav", "b.mp3", "calls.zip/day1/c.wav", "calls.zip/notes.txt"]
    assert "not an audio file" in lines[-1]


# -- the architecture page --------------------------------------------------------------------------


def test_the_architecture_page_lists_every_module_and_no_other():
    text = page("architecture.md")
    listed = set(re.findall(r"^\| `(emotion2vec_ui/[\w/]+\.py)` \|", text, re.M))
    modules = {str(path.relative_to(ROOT)) for path in PACKAGE.rglob("*.py")}
    assert listed == modules, f"missing: {sorted(modules - listed)}; gone: {sorted(listed - modules)}"
    for path in modules:  # each with its job
        assert re.search(rf"^\| `{re.escape(path)}` \| \d+ \| \S.*\|$", text, re.M), path


def test_the_architecture_page_quotes_the_layering_contract():
    try:
        import tomllib
    except ImportError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    (contract,) = config["tool"]["importlinter"]["contracts"]
    quoted = code_blocks(page("architecture.md"), "toml")[0]
    assert tomllib.loads(quoted)["tool"]["importlinter"]["contracts"] == [contract]
    rooms = {room.strip(" ()") for layer in contract["layers"] for room in layer.split("|")}
    table = section(page("architecture.md"), "## Rooms")
    for room in rooms - {"live", "heads"}:
        assert f"| `{room}` |" in table, room
