"""The README's promises: it starts with the two commands, its Python example runs as written, its
command lines and API names are the code's, its conversation examples are the docs page's, and
every relative link in it points to a file (and heading) that exists. The docs pages' own checks
are in test_docs.py."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

from tests.test_docs import app_commands, app_parser, cli_commands, code_blocks, page, run_python_example, section

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def _readme() -> str:
    return README.read_text(encoding="utf-8")


def test_readme_starts_with_the_two_commands():
    first_block = code_blocks(_readme(), "bash")[0]
    commands = [line.split("#")[0].strip() for line in first_block.strip().splitlines()]
    assert commands == ["bash run.sh", "bash run.sh test"]


def test_python_api_snippet_runs_as_written(tmp_path, tiny_checkpoint, wav_clip):
    snippet = code_blocks(section(_readme(), "## Python API"), "python")[0]
    assert 'load_model().predict("clip.wav", granularity="frame")' in snippet
    run_python_example(snippet, tmp_path, tiny_checkpoint, wav_clip)


def test_every_command_in_the_readme_parses():
    from emotion2vec_ui.cli.main import build_parser

    commands = cli_commands(_readme())
    assert {argv[0] for argv in commands} >= {"predict", "batch"}
    for argv in commands:
        build_parser().parse_args(argv)  # an unknown command or flag exits (SystemExit)
    assert app_commands(_readme())
    for argv in app_commands(_readme()):
        app_parser().parse_args(argv)


def test_the_readmes_api_names_exist():
    """The REST calls the README makes are those the docs check against the app (test_docs.py)."""
    named = set(re.findall(r'api_name="/(\w+)"', _readme()))
    assert named == {"predict"}
    assert 'api_name="/predict"' in page("web.md")


def test_the_readmes_conversation_examples_are_the_docs_pages():
    """Both run in test_ui_conversation.py; they must not drift apart."""
    readme = section(_readme(), "## Conversations (segment mode)")
    docs = page("conversations.md")
    for language in ("python", "bash"):
        assert code_blocks(readme, language) == code_blocks(docs, language), language


# -- links ------------------------------------------------------------------------------------------


def _slug(heading: str) -> str:
    """The anchor MkDocs gives a heading (Python-Markdown's toc slugify)."""
    from markdown.extensions.toc import slugify

    return slugify(re.sub(r"`", "", heading), "-")


def _anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
    return {_slug(heading) for heading in re.findall(r"^#+ (.+)$", text, re.M)}


def test_every_relative_link_in_the_readme_points_to_an_existing_file():
    links = re.findall(r"\]\(([^)\s]+)\)", _readme())
    relative = [link for link in links if not re.match(r"[a-z]+://", link)]
    assert "docs/images/page.png" in relative and "docs/index.md" in relative
    for link in relative:
        target, _, anchor = unquote(link).partition("#")
        assert (ROOT / target).is_file(), f"README links to {target}, which is not a file"
        if anchor:
            assert anchor in _anchors(ROOT / target), f"README links to {link}: {target} has no such heading"


def test_the_readme_links_every_docs_page():
    linked = set(re.findall(r"\]\(docs/([\w/]+\.md)", _readme()))
    pages = {str(path.relative_to(ROOT / "docs")) for path in (ROOT / "docs").rglob("*.md")}
    assert linked == pages
