"""The page's conversation views and the speaker options of the page and the REST API:
plain view functions on real segment results, the handlers without a server, and
/predict served for real and called through gradio_client."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest

from emotion2vec_ui.audio.decode import SAMPLE_RATE
from emotion2vec_ui.audio.testdata import write_audio
from emotion2vec_ui.results import Segment, build_segment_result
from emotion2vec_ui.web.conversation import (
    clock,
    conversation_outputs,
    conversation_table,
    parse_speaker_names,
    parse_speakers,
    row_span_s,
    speaker_cards_html,
    tick_step_s,
    timeline_html,
)
from tests.ui_server import ui_server  # noqa: F401  (ui_server is a fixture)

from .speech import stereo_call

LABELS = ["angry", "disgusted", "fearful", "happy", "neutral", "other", "sad", "surprised", "unknown"]
SEGMENT_FILES = {"segments.csv", "segments.srt", "segments.vtt"}


@pytest.fixture(scope="module")
def stereo_file(tmp_path_factory) -> tuple[Path, list]:
    """The stereo call (a voice per channel) as a WAV file, and its known speech regions."""
    stereo, regions = stereo_call()
    return write_audio(tmp_path_factory.mktemp("call") / "call_stereo.wav", stereo, SAMPLE_RATE, "wav"), regions


@pytest.fixture(scope="module")
def mono_file(tmp_path_factory) -> Path:
    stereo, _ = stereo_call()
    return write_audio(tmp_path_factory.mktemp("mono") / "call_mono.wav", stereo.mean(axis=1), SAMPLE_RATE, "wav")


def session(minutes: float, speakers: int = 2, seed: int = 0):
    """A segment result over `minutes`: speakers taking 2-8 s turns with 0.3-2 s pauses
    (some turns under 1 s), each with random scores."""
    import numpy as np

    rng = np.random.default_rng(seed)
    segments, t, turn = [], 0.5, 0
    while t < minutes * 60 - 1:
        length = min(rng.choice([0.6, 2.0, 4.0, 8.0]), minutes * 60 - t)
        probs = rng.dirichlet(np.ones(len(LABELS)) * 0.3)
        top = int(probs.argmax())
        segments.append(Segment(t, t + length, f"S{turn % speakers + 1}", LABELS[top], float(probs[top]),
                                dict(zip(LABELS, map(float, probs))), mixed_speakers=bool(rng.random() < 0.05)))
        t += length + rng.uniform(0.3, 2.0)
        turn += 1
    result = build_segment_result(segments, LABELS, minutes * 60, "tiny", "session.wav")
    result.timings_s = {"vad": 1.0, "speakers": 2.0, "emotion": 7.0, "total": 10.5}
    return result


# -- options --------------------------------------------------------------------------------


@pytest.mark.parametrize("value, expected", [
    (None, None), ("", None), ("one", None), (" channels ", "channels"), ("auto", "auto"), ("2", 2), (3, 3),
])
def test_speaker_modes_are_read_as_predict_takes_them(value, expected):
    assert parse_speakers(value) == expected


@pytest.mark.parametrize("value", ["stereo", "0", "-2", 0, True, "2.5", ["auto"]])
def test_unknown_speaker_modes_are_refused_with_the_accepted_ones(value):
    with pytest.raises(ValueError, match='speakers must be "one", "channels" .*"auto" or a number'):
        parse_speakers(value)


def test_speaker_names_are_split_and_checked():
    assert parse_speaker_names("agent, customer", "channels") == ["agent", "customer"]
    assert parse_speaker_names("客服，客户", "auto") == ["客服", "客户"]
    assert parse_speaker_names("  ", 2) is None and parse_speaker_names(None, None) is None
    assert parse_speaker_names("Dr. Li", None) == ["Dr. Li"]
    with pytest.raises(ValueError, match="distinct and none empty"):
        parse_speaker_names("agent,,customer", "channels")
    with pytest.raises(ValueError, match="distinct and none empty"):
        parse_speaker_names("a, a", "auto")
    with pytest.raises(ValueError, match="3 speaker names given for 2 speakers"):
        parse_speaker_names("a, b, c", 2)
    with pytest.raises(ValueError, match="2 speaker names given for 1 speaker;"):
        parse_speaker_names("a, b", None)
    with pytest.raises(ValueError, match="must be text"):
        parse_speaker_names(["a", "b"], "channels")


# -- views ----------------------------------------------------------------------------------


def test_clock_and_timeline_rows():
    assert clock(75.26) == "1:15.3" and clock(3725, 0) == "1:02:05" and clock(59.96) == "1:00.0"
    assert row_span_s(20.0) == 20.0 and row_span_s(120.0) == 120.0  # a short call is one row
    assert row_span_s(600.0) == 120.0 and row_span_s(3600.0) == 300.0 and row_span_s(2 * 3600.0) == 600.0
    assert tick_step_s(20.0) == 5.0 and tick_step_s(120.0) == 20.0 and tick_step_s(300.0) == 60.0


@pytest.mark.parametrize("minutes, rows", [(2, 1), (60, 12)])
def test_the_timeline_has_a_lane_per_speaker_and_a_bar_per_segment(minutes, rows):
    result = session(minutes)
    page = timeline_html(result)
    assert page.count('class="e2v-tl-row"') == rows
    assert page.count('class="e2v-tl-lane"') == rows * 2
    bars = re.findall(r'<span class="([^"]*)" title="([^"]*)" data-emotion="(\w+)" style="left: ([\d.]+)%; '
                      r'width: ([\d.]+)%; background-color: (#\w+)">', page)
    # A segment crossing a row's end is drawn in both rows; every segment is drawn at least once.
    assert len(result.segments) <= len(bars) <= len(result.segments) + rows
    assert {emotion for *_, emotion, _, _, _ in bars} == {s.emotion for s in result.segments}
    assert all(0 <= float(left) <= 100 and 0 < float(width) <= 100.001 for *_, left, width, _ in bars)
    short = sum(s.short for s in result.segments)
    assert short and sum("e2v-short" in classes for classes, *_ in bars) >= short
    first = result.segments[0]
    assert f"{clock(first.start_s)}–{clock(first.end_s)} · {first.speaker} · {first.display}" in page
    assert "hatched: shorter than 1 s" in page


def test_speaker_cards_and_table_say_what_each_speaker_felt():
    result = session(2)
    cards = speaker_cards_html(result)
    assert cards.count('class="e2v-spk"') == 2
    for summary in result.speakers:
        assert f'<span class="e2v-spk-name">{summary.speaker}</span>' in cards
        assert f"说话 speech {clock(summary.speech_s)} · {summary.num_segments} 段 segments" in cards
    table = conversation_table(result)
    assert len(table) == len(result.segments)
    row = table.iloc[0]
    first = result.segments[0]
    assert (row["时间 Time"], row["说话人 Speaker"], row["情绪 Emotion"]) == (
        f"{clock(first.start_s)}–{clock(first.end_s)}", first.speaker, first.display)
    assert row["置信度 Conf."] == f"{first.confidence:.1%}"
    flags = table["提示 Flag"].tolist()
    assert [("⚠ 短 short" in f) for f in flags] == [s.short for s in result.segments]
    assert [("⚠ 混合 mixed" in f) for f in flags] == [s.mixed_speakers for s in result.segments]


def test_no_speech_and_other_granularities():
    silent = build_segment_result([], LABELS, 5.0, "tiny", "quiet.wav", note="No speech was found.")
    visible, summary, timeline, table = conversation_outputs(silent)
    assert visible and "No speech was found." in timeline and summary == "" and len(table) == 0
    assert "<b>0</b> 个语段 segments" in timeline
    utterance = build_segment_result([], LABELS, 5.0, "tiny")
    utterance.granularity = "utterance"
    assert conversation_outputs(utterance) == (False, "", "", None)


def test_names_in_the_views_are_escaped():
    result = session(1)
    for segment in result.segments:
        segment.speaker = {"S1": "<b>agent</b>", "S2": 'A & "B"'}[segment.speaker]
    result = build_segment_result(result.segments, LABELS, 60.0, "tiny")
    shown = timeline_html(result) + speaker_cards_html(result)
    assert "<b>agent</b>" not in shown and "&lt;b&gt;agent&lt;/b&gt;" in shown and "A &amp; &quot;B&quot;" in shown


# -- the handlers, without a server --------------------------------------------------------


@pytest.fixture
def handlers(tiny_model, tmp_path):
    from emotion2vec_ui.settings import default_settings
    from emotion2vec_ui.web.single import Handlers

    return Handlers(tiny_model, default_settings("server", output_dir=str(tmp_path / "outputs")))


def test_the_page_shows_a_stereo_call_by_channel(handlers, stereo_file):
    path, regions = stereo_file
    shown = handlers.page_recognize(str(path), "segment", False, "channels", "agent, customer")
    headline, log, visible, summary, timeline, table, files = shown[0], shown[2], *shown[9:], shown[8]
    assert visible and "语段级别 (segment)" in headline
    assert timeline.count('class="e2v-tl-lane"') == 2 and "agent" in timeline and "customer" in timeline
    assert "分析用时 analysis took" in timeline
    assert summary.count('class="e2v-spk"') == 2
    assert set(table["说话人 Speaker"]) == {"agent", "customer"} and len(table) >= len(regions) - 1
    assert {Path(f).name for f in files} == {"result.json", "processed_audio.wav"} | SEGMENT_FILES
    assert re.search(r"\[3/4\] 推理 Inference: segment on cpu in .* \d+ segments, 2 speakers", log)
    assert shown[3] is False  # the frame views stay hidden


@pytest.mark.parametrize("speakers, names, words", [
    ("stereo", "", 'speakers must be "one", "channels"'),
    ("channels", "a, b, c", "3 speaker names given for a recording with 2 channels"),
    ("2", "only one", "1 speaker name given for 2 speakers"),  # the count in the singular
])
def test_handlers_refuse_bad_speaker_options_and_write_nothing(handlers, stereo_file, speakers, names, words, tmp_path):
    from emotion2vec_ui.web.requests import UserFacingError

    with pytest.raises(UserFacingError, match=words) as raised:
        handlers.api_predict(str(stereo_file[0]), "segment", False, speakers, names)
    assert raised.value.title == "请求无效 Invalid request"
    assert not (tmp_path / "outputs").exists() or not any((tmp_path / "outputs").iterdir())


def test_channels_on_a_mono_file_is_a_clear_error(handlers, mono_file):
    from emotion2vec_ui.web.requests import UserFacingError

    with pytest.raises(UserFacingError, match="call_mono.wav: one speaker per channel needs a recording with two"):
        handlers.api_predict(str(mono_file), "segment", False, "channels")


def test_speaker_options_do_not_disturb_the_pages_other_granularities(handlers, stereo_file):
    """The page's hidden speaker inputs keep their values when another granularity is chosen;
    an API call that sets them for another granularity is told they do not apply."""
    from emotion2vec_ui.web.requests import UserFacingError

    shown = handlers.page_recognize(str(stereo_file[0]), "utterance", False, "channels", "agent, customer")
    page_json, files = shown[7], shown[8]
    assert page_json["granularity"] == "utterance" and "segments" not in page_json and len(files) == 2
    with pytest.raises(UserFacingError, match='apply to granularity "segment" only'):
        handlers.api_predict(str(stereo_file[0]), "utterance", False, "channels", "agent, customer")


# -- the REST API, served for real ------------------------------------------------------------


@pytest.fixture(scope="module")
def client(ui_server):  # noqa: F811
    from gradio_client import Client

    return Client(ui_server.url, verbose=False)


def test_the_api_takes_speakers_and_names(client, ui_server, stereo_file):  # noqa: F811
    from gradio_client import handle_file

    path, regions = stereo_file
    data, files = client.predict(handle_file(str(path)), "segment", False, "channels", "agent, customer",
                                 api_name="/predict")
    assert data["granularity"] == "segment" and data["input"] == path.name
    assert [s["speaker"] for s in data["speakers"]] == ["agent", "customer"]
    assert data["num_segments"] == len(data["segments"]) >= len(regions) - 1
    by_name = {Path(f).name: Path(f) for f in files}
    assert set(by_name) == {"result.json", "processed_audio.wav"} | SEGMENT_FILES
    rows = list(csv.DictReader(io.StringIO(by_name["segments.csv"].read_text(encoding="utf-8"))))
    assert [(r["speaker"], float(r["start_s"])) for r in rows] == [(s["speaker"], s["start_s"]) for s in data["segments"]]
    assert "agent: " in by_name["segments.srt"].read_text(encoding="utf-8")
    assert by_name["segments.vtt"].read_text(encoding="utf-8").startswith("WEBVTT")
    saved = json.loads((ui_server.output_dir / data["output_folder"] / "result.json").read_text(encoding="utf-8"))
    assert saved["segments"] == data["segments"]


def test_old_three_argument_calls_still_work(client, ui_server, stereo_file):  # noqa: F811
    from gradio_client import handle_file

    from tests.test_server import call_events, uploaded

    data, _ = client.predict(handle_file(str(stereo_file[0])), "segment", False, api_name="/predict")
    assert {s["speaker"] for s in data["segments"]} == {"S1"}  # one speaker by default
    # A raw REST call that sends only the first three inputs (as before speakers existed).
    event, body = call_events(ui_server.url, [uploaded(ui_server.url, stereo_file[0]), "utterance", False])
    assert event == "complete" and body[0]["granularity"] == "utterance"
    event, body = call_events(ui_server.url, [uploaded(ui_server.url, stereo_file[0]), "segment", False, "auto"])
    assert event == "complete" and body[0]["num_segments"] > 0
    # Speaker names may come as a JSON list too.
    event, body = call_events(ui_server.url, [uploaded(ui_server.url, stereo_file[0]), "segment", False, "channels",
                                              ["agent", "customer"]])
    assert event == "complete" and [s["speaker"] for s in body[0]["speakers"]] == ["agent", "customer"]


def test_bad_speaker_options_are_clear_errors_and_the_server_goes_on(client, ui_server, stereo_file, mono_file):  # noqa: F811
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    from tests.test_server import call_events

    before = sorted(ui_server.output_dir.iterdir()) if ui_server.output_dir.exists() else []
    with pytest.raises(AppError, match='speakers must be "one", "channels"'):
        client.predict(handle_file(str(stereo_file[0])), "segment", False, "everyone", "", api_name="/predict")
    with pytest.raises(AppError, match="call_mono.wav: one speaker per channel needs a recording with two or more"):
        client.predict(handle_file(str(mono_file)), "segment", False, "channels", "", api_name="/predict")
    with pytest.raises(AppError, match="3 speaker names given for a recording with 2 channels"):
        client.predict(handle_file(str(stereo_file[0])), "segment", False, "channels", "a,b,c", api_name="/predict")
    # Refused before any upload is looked at: a malformed call with a bad speaker mode.
    event, body = call_events(ui_server.url, [None, "segment", False, "stereo"])
    assert event == "error" and 'speakers must be "one", "channels"' in body["error"]
    after = sorted(ui_server.output_dir.iterdir()) if ui_server.output_dir.exists() else []
    assert after == before
    data, _ = client.predict(handle_file(str(stereo_file[0])), "segment", False, "2", "", api_name="/predict")
    assert {s["speaker"] for s in data["speakers"]} <= {"S1", "S2"}  # still serving


# -- the README's Conversations section runs as written -----------------------------------------

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_blocks(language: str) -> list[str]:
    section = README.read_text(encoding="utf-8").split("## Conversations (segment mode)", 1)[1].split("\n## ", 1)[0]
    return re.findall(rf"```{language}\n(.*?)```", section, re.S)


@pytest.fixture
def readme_folder(tmp_path, stereo_file):
    """call.wav (the stereo call) and session.m4a (its mix, encoded as AAC) in a fresh folder."""
    import shutil

    from .speech import dialogue

    shutil.copyfile(stereo_file[0], tmp_path / "call.wav")
    write_audio(tmp_path / "session.m4a", dialogue()[0], SAMPLE_RATE, "m4a")
    return tmp_path


def test_the_readme_python_example_runs(readme_folder, tiny_checkpoint):
    import subprocess
    import sys

    snippet = readme_blocks("python")[0].replace("load_model()", f"load_model({str(tiny_checkpoint)!r}, device='cpu')")
    run = subprocess.run([sys.executable, "-c", snippet], cwd=readme_folder, capture_output=True, text=True,
                         timeout=300, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(README.parent)})
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert re.match(r"\d+\.\d-\d+\.\ds (agent|customer) \w+ \d+%", lines[0])
    assert [line.split()[0] for line in lines[-2:]] == ["agent", "customer"]


def test_the_readme_cli_examples_run(readme_folder, tiny_checkpoint):
    import os
    import shlex
    import subprocess
    import sys

    env = {**os.environ, "E2V_MODEL": str(tiny_checkpoint), "E2V_DEVICE": "cpu", "PYTHONPATH": str(README.parent)}
    outputs = []
    for command in readme_blocks("bash")[0].strip().splitlines():
        argv = shlex.split(command)
        assert argv[:3] == [".venv/bin/python", "-m", "emotion2vec_ui"]  # run here with this test's Python
        run = subprocess.run([sys.executable, *argv[1:]], cwd=readme_folder, env=env, capture_output=True,
                             text=True, timeout=300)
        assert run.returncode == 0, run.stderr
        outputs.append(run.stdout)
    per_segment = outputs[0].splitlines()[1:]
    assert per_segment and {line.split("\t")[2] for line in per_segment} == {"agent", "customer"}
    data = json.loads(outputs[1].splitlines()[0])
    assert data["granularity"] == "segment" and {s["speaker"] for s in data["segments"]} == {"S1", "S2"}


def test_the_readme_rest_example_runs(readme_folder, client, monkeypatch):
    from gradio_client import handle_file

    monkeypatch.chdir(readme_folder)
    printed = []
    exec(readme_blocks("python")[1], {"client": client, "handle_file": handle_file, "print": lambda *args: printed.append(args)})
    segments, files = printed[0]
    assert {speaker for speaker, _, _ in segments} == {"agent", "customer"} and len(files) == 5
