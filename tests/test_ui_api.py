"""The web app as users and programs meet it: `python app.py` served for real, called
through gradio_client and plain HTTP, on the tiny checkpoint."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pytest

from tests.ui_server import MAX_FILE_MB, REPO, app_env, ui_server  # noqa: F401  (ui_server is a fixture)

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

LABELS = {"angry", "disgusted", "fearful", "happy", "neutral", "other", "sad", "surprised", "unknown"}


@pytest.fixture(scope="module")
def client(ui_server):  # noqa: F811
    return Client(ui_server.url, verbose=False)


def predict(client, path, granularity="utterance", embedding=False):
    return client.predict(handle_file(str(path)), granularity, embedding, api_name="/predict")


def check_recognition(ui_server, data, files, granularity, embedding, source_name):  # noqa: F811
    """The returned JSON and files, and the output folder the app wrote."""
    assert data["emotion"] in LABELS
    assert set(data["scores"]) <= LABELS and data["emotion"] in data["scores"]
    assert math.isclose(sum(data["scores"].values()), 1.0, abs_tol=1e-6)
    assert data["confidence"] == max(data["scores"].values())
    assert data["granularity"] == granularity
    assert data["input"] == source_name  # the user's file name, not a server path
    if granularity == "frame":
        assert data["num_frames"] == len(data["frame_scores"]) > 0
        assert all(math.isclose(sum(row), 1.0, abs_tol=1e-4) for row in data["frame_scores"])
        assert data["segments"] and data["segments"][0]["start_s"] == 0.0
    else:
        assert "frame_scores" not in data and "segments" not in data
    assert "warnings" not in data  # speech-like clips of seconds: nothing to warn about
    assert data["random_weights"] is True and "meaningless" in data["model_warning"]  # the test checkpoint's
    expected = {"result.json", "processed_audio.wav"} | ({"embedding.npy"} if embedding else set())
    assert {Path(f).name for f in files} == expected
    assert ("embedding_shape" in data) == embedding

    folder = ui_server.output_dir / data["output_folder"]
    assert {p.name for p in folder.iterdir()} == expected
    saved = json.loads((folder / "result.json").read_text(encoding="utf-8"))
    assert saved == {k: v for k, v in data.items() if k != "output_folder"}
    downloaded = next(f for f in files if Path(f).name == "result.json")
    assert json.loads(Path(downloaded).read_text(encoding="utf-8")) == saved


def test_the_api_lists_only_predict_and_predict_batch(client):
    info = client.view_api(print_info=False, return_format="dict")
    assert sorted(info["named_endpoints"]) == ["/predict", "/predict_batch"]
    assert not info["unnamed_endpoints"]
    endpoint = info["named_endpoints"]["/predict"]
    assert [p["parameter_name"] for p in endpoint["parameters"]] == [
        "audio", "granularity", "embedding", "speakers", "speaker_names"]
    assert [p["parameter_has_default"] for p in endpoint["parameters"][3:]] == [True, True]
    assert [r["component"] for r in endpoint["returns"]] == ["Json", "File"]
    endpoint = info["named_endpoints"]["/predict_batch"]
    assert [p["parameter_name"] for p in endpoint["parameters"]] == ["files", "granularity", "embedding", "speakers"]
    assert [r["component"] for r in endpoint["returns"]] == ["Json", "File"]


@pytest.mark.parametrize("granularity, embedding", [("utterance", False), ("frame", True)])
def test_every_format(client, ui_server, audio_files, granularity, embedding):  # noqa: F811
    for case, path in audio_files.items():
        data, files = predict(client, path, granularity, embedding)
        check_recognition(ui_server, data, files, granularity, embedding, Path(path).name)
        assert math.isclose(data["duration_s"], 2.0, abs_tol=0.1), case


@pytest.mark.parametrize("granularity, embedding", [("utterance", True), ("frame", False)])
def test_other_options(client, ui_server, wav_clip, granularity, embedding):  # noqa: F811
    data, files = predict(client, wav_clip, granularity, embedding)
    check_recognition(ui_server, data, files, granularity, embedding, wav_clip.name)
    if embedding:
        assert data["embedding_shape"][0] > 1


def test_speaker_options_outside_segment_mode_are_refused(client, wav_clip):
    for speakers, names in (("auto", ""), ("2", ""), ("one", "agent")):
        with pytest.raises(AppError, match='apply to granularity "segment" only'):
            client.predict(handle_file(str(wav_clip)), "utterance", False, speakers, names, api_name="/predict")
    data, _ = client.predict(handle_file(str(wav_clip)), "frame", False, "one", "", api_name="/predict")
    assert data["granularity"] == "frame"


def test_a_short_silent_clip_comes_back_with_warnings(client, ui_server, tmp_path):  # noqa: F811
    import soundfile as sf

    quiet = tmp_path / "quiet.wav"
    sf.write(quiet, np.zeros(8_000, dtype=np.float32), 16_000)
    data, _ = predict(client, quiet)
    assert len(data["warnings"]) == 2
    assert "Short clip: 0.50 s" in data["warnings"][0] and "digital silence" in data["warnings"][1]
    saved = json.loads((ui_server.output_dir / data["output_folder"] / "result.json").read_text(encoding="utf-8"))
    assert saved["warnings"] == data["warnings"]


def bad_files(folder: Path, audio_files: dict) -> dict[str, Path]:
    """A text file named .wav, an empty .mp3, and a WAV cut to half its data."""
    text = folder / "notes_not_audio.wav"
    text.write_text("this is not audio\n" * 50)
    empty = folder / "empty_clip.mp3"
    empty.write_bytes(b"")
    whole = audio_files["wav-44100-2ch"].read_bytes()
    truncated = folder / "truncated_take.wav"
    truncated.write_bytes(whole[: len(whole) // 2])
    return {"text": text, "empty": empty, "truncated": truncated}


def test_bad_files_are_named_and_the_next_call_works(client, ui_server, audio_files, wav_clip, tmp_path):  # noqa: F811
    for kind, path in bad_files(tmp_path, audio_files).items():
        with pytest.raises(AppError) as raised:
            predict(client, path)
        message = str(raised.value)
        assert message.startswith(path.name), (kind, message)
        assert str(tmp_path) not in message and "/gradio" not in message, message
        data, files = predict(client, wav_clip)
        check_recognition(ui_server, data, files, "utterance", False, wav_clip.name)


def test_no_audio_and_bad_options_are_clear_errors(client, wav_clip):
    with pytest.raises(AppError, match="upload or record"):
        client.predict(None, "utterance", False, api_name="/predict")
    with pytest.raises(AppError, match="utterance"):
        predict(client, wav_clip, "sentence")


def post_json(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def upload(url: str, path: Path, content: bytes | None = None) -> tuple[int, bytes]:
    """POST one file to /gradio_api/upload as multipart form data."""
    boundary = uuid.uuid4().hex
    content = path.read_bytes() if content is None else content
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{path.name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode() + content + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(
        url + "gradio_api/upload", data=body, method="POST",
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_the_route_that_skips_the_queue_is_closed(ui_server, wav_clip):  # noqa: F811
    status, uploaded = upload(ui_server.url, wav_clip)
    assert status == 200
    file_data = {"path": json.loads(uploaded)[0], "meta": {"_type": "gradio.FileData"}}
    for route in ("gradio_api/run/predict", "gradio_api/api/predict"):
        status, body = post_json(ui_server.url + route, {"data": [file_data, "utterance", False]})
        assert status == 404, (route, body)
        assert "join the queue" in body["detail"]


def test_rest_call_in_two_steps(ui_server, wav_clip):  # noqa: F811
    """The curl recipe of docs/web.md: upload, POST /gradio_api/call/predict, GET the events."""
    status, uploaded = upload(ui_server.url, wav_clip)
    file_data = {"path": json.loads(uploaded)[0], "meta": {"_type": "gradio.FileData"}}
    status, body = post_json(ui_server.url + "gradio_api/call/predict", {"data": [file_data, "frame", True]})
    assert status == 200 and "event_id" in body
    with urllib.request.urlopen(f"{ui_server.url}gradio_api/call/predict/{body['event_id']}", timeout=60) as stream:
        text = stream.read().decode()
    event, data_line = [line for line in text.splitlines() if line][-2:]
    assert event == "event: complete", text[:500]
    data, files = json.loads(data_line.removeprefix("data: "))
    assert data["granularity"] == "frame" and data["input"] == wav_clip.name
    assert sorted(f["orig_name"] for f in files) == ["embedding.npy", "processed_audio.wav", "result.json"]
    with urllib.request.urlopen(files[0]["url"], timeout=30) as response:
        assert response.status == 200


def test_uploads_over_the_size_limit_are_refused(ui_server, tmp_path):  # noqa: F811
    big = tmp_path / "too_big.wav"
    status, body = upload(ui_server.url, big, b"\0" * int((MAX_FILE_MB + 1) * 1024 * 1024))
    assert status == 413, body[:200]


def test_recognitions_share_one_queued_model_slot(tiny_model, tmp_path):
    """Both model events (page button and /predict) run one at a time, in a bounded queue;
    batches (the batch tab's button and /predict_batch) one at a time in the same queue."""
    from emotion2vec_ui.settings import default_settings
    from emotion2vec_ui.web.batch import BATCH_CONCURRENCY_ID
    from emotion2vec_ui.web.page import MODEL_CONCURRENCY_ID, build_demo

    demo = build_demo(tiny_model, default_settings("server", output_dir=str(tmp_path), queue_size=7))
    model_events = [fn for fn in demo.fns.values() if fn.concurrency_id == MODEL_CONCURRENCY_ID]
    assert len(model_events) == 3 and all(fn.concurrency_limit == 1 for fn in model_events)  # run, example, API
    batch_events = [fn for fn in demo.fns.values() if fn.concurrency_id == BATCH_CONCURRENCY_ID]
    assert len(batch_events) == 2 and all(fn.concurrency_limit == 1 for fn in batch_events)
    public = [fn.api_name for fn in demo.fns.values() if fn.api_visibility == "public"]
    assert sorted(public) == ["predict", "predict_batch"]
    assert demo._queue.max_size == 7 and demo.api_open is False


def run_app(tmp_path, *args, checkpoint="unused", timeout=120):
    return subprocess.run(
        [sys.executable, "app.py", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout,
        env=app_env(checkpoint, tmp_path / "outputs", tmp_path / "gradio"),
    )


def test_a_model_that_cannot_load_ends_the_app_with_its_message(tmp_path):
    empty = tmp_path / "not_a_checkpoint"
    empty.mkdir()
    done = run_app(tmp_path, "--port", "1", checkpoint=empty)
    assert done.returncode == 2
    assert done.stderr.startswith("error: model folder") and "config.yaml" in done.stderr
    assert "Traceback" not in done.stderr and "Running on" not in done.stdout


def test_bad_options_are_refused_before_loading(tmp_path):
    done = run_app(tmp_path, "--auth", "no-colon", timeout=30)
    assert done.returncode == 2 and "user:password" in done.stderr and "Traceback" not in done.stderr


# -- the page's plain functions ------------------------------------------------------------


def frame_result(seconds: float, seed: int = 0):
    """An EmotionResult in frame mode over `seconds` of random (T, 9) frame scores."""
    import numpy as np

    from emotion2vec_ui.results import build_result

    frames = int(seconds / 0.02)
    probs = np.random.default_rng(seed).dirichlet(np.ones(len(LABELS)), size=frames)  # (T, K)
    labels = ["angry", "disgusted", "fearful", "happy", "neutral", "other", "sad", "surprised", "unknown"]
    return build_result(probs.mean(axis=0), labels, "frame", seconds, "tiny", "clip.wav", frame_probs=probs)


@pytest.mark.parametrize("seconds, step_s, window_s, points", [(4.65, 0.1, 0.1, 46), (30, 0.1, 0.5, 300), (600, 2.0, 10.0, 300)])
def test_the_time_plot_stays_light_and_smooth(seconds, step_s, window_s, points):
    from emotion2vec_ui.web.views import emotion_track

    track, step, window = emotion_track(frame_result(seconds))
    assert (step, window) == (step_s, window_s)
    assert len(track) == points * len(LABELS) and track["emotion"].nunique() == len(LABELS)
    sums = track.groupby("time_s")["score"].sum()  # a moving average of distributions is 100 %
    assert len(sums) == points and ((sums - 100).abs() <= 0.5).all()
    assert track["time_s"].min() > 0 and track["time_s"].max() < seconds


def test_page_helpers():
    from emotion2vec_ui.web.views import headline_html, page_json, segment_min_s, segment_table

    result = frame_result(600)
    assert segment_min_s(30) == 0.5 and segment_min_s(600) == 5.0
    table = segment_table(result)
    assert list(table.columns)[3] == "情绪 Emotion" and table.iloc[0, 0] == "0.00"
    assert float(table.iloc[-1, 1]) == pytest.approx(len(result.frame_scores) * 0.02)
    data = result.to_dict()
    shown = page_json(data)
    assert isinstance(shown["frame_scores"], str) and "result.json" in shown["frame_scores"]
    assert data["frame_scores"] and shown["scores"] == {key: round(p, 4) for key, p in data["scores"].items()}
    assert shown["confidence"] == round(data["confidence"], 4)  # people read 4 decimals; result.json keeps all
    result.source = "<b>odd</b> name.wav"
    card = headline_html(result)
    assert "&lt;b&gt;odd&lt;/b&gt; name.wav" in card and "<b>odd" not in card
    assert f"{result.display} " in card and f"置信度: {result.confidence:.1%}" in card
    assert "the probability the model gives this emotion for the whole clip" in card


def test_segment_table_follows_the_smoothed_track_the_plot_shows():
    """30 s where "other" leads for whole seconds but never for 0.5 s of raw 20 ms frames."""
    import numpy as np

    from emotion2vec_ui.results import build_result
    from emotion2vec_ui.web.views import emotion_track, segment_table

    labels = ["angry", "other", "neutral"]
    rng = np.random.default_rng(0)
    frames = 1500  # 30 s
    leader = np.where((np.arange(frames) // 250) % 2 == 1, 1, 0)  # 5 s turns: angry, other, angry, ...
    # Within each turn the leader wins 3 frames in 4, the others flicker to neutral.
    winner = np.where(rng.random(frames) < 0.75, leader, 2)
    probs = np.full((frames, 3), 0.2)
    probs[np.arange(frames), winner] = 0.6
    result = build_result(probs.mean(axis=0), labels, "frame", 30.0, "tiny", "clip.wav", frame_probs=probs)
    assert len(result.frame_runs(0.5)) == 1  # the raw 20 ms runs: one row for the whole clip

    table = segment_table(result)
    assert list(table["情绪 Emotion"]) == ["😠 愤怒 (Angry)", "🤔 其他 (Other)"] * 3
    starts = [float(x) for x in table["开始 Start (s)"]]
    assert starts[0] == 0.0 and all(abs(start - 5 * i) < 0.6 for i, start in enumerate(starts))
    track, _, _ = emotion_track(result)
    other = track[track["emotion"] == "🤔 其他 Other"].set_index("time_s")["score"]
    # Where the table says "other", the plot's "other" line is on top.
    for _, row in table[table["情绪 Emotion"] == "🤔 其他 (Other)"].iterrows():
        inside = other[(other.index > float(row.iloc[0]) + 0.5) & (other.index < float(row.iloc[1]) - 0.5)]
        assert len(inside) and (inside > 100 / 3).all()


def test_clip_warnings_warn_about_short_and_silent_clips():
    import numpy as np

    from emotion2vec_ui.audio.decode import clip_warnings
    from tests.conftest import random_speechlike

    speech = random_speechlike(3.0)
    assert clip_warnings(speech) == []
    short = clip_warnings(speech[:8_000])
    assert len(short) == 1 and "Short clip: 0.50 s, under the recommended 1 s" in short[0]
    silent = clip_warnings(np.zeros(48_000, dtype=np.float32))
    assert len(silent) == 1 and "Nearly silent" in silent[0] and "digital silence" in silent[0]
    hum = clip_warnings(speech * 0.001)  # about -66 dBFS
    assert len(hum) == 1 and "dBFS" in hum[0]


def test_score_bars_show_every_emotion_as_a_percentage():
    from emotion2vec_ui.web.views import emotion_name, score_bars_html

    result = frame_result(3)
    bars = score_bars_html(result)
    assert bars.count('<div class="e2v-score"') + bars.count('<div class="e2v-score e2v-top"') == len(LABELS)
    assert bars.count("e2v-top") == 1
    for key, score in result.scores.items():
        assert f"{score:.1%}</span>" in bars and emotion_name(key) in bars
    assert score_bars_html(None) == ""


# -- the handlers, without a server --------------------------------------------------------


@pytest.fixture
def handlers(tiny_model, tmp_path):
    from emotion2vec_ui.settings import default_settings
    from emotion2vec_ui.web.single import Handlers

    return Handlers(tiny_model, default_settings("server", output_dir=str(tmp_path / "outputs")))


def test_handlers_answer_the_page_and_the_api(handlers, wav_clip, tmp_path):
    data, files = handlers.api_predict(str(wav_clip), "frame", True)
    assert data["granularity"] == "frame" and sorted(Path(f).name for f in files) == [
        "embedding.npy", "processed_audio.wav", "result.json"]
    headline, scores, log, frame_mode, track, legend, segments, shown, page_files, *conversation = (
        handlers.page_recognize(str(wav_clip), "utterance", False))
    assert frame_mode is False and track is None and len(page_files) == 2
    assert conversation == [False, "", "", None]  # the conversation views stay hidden
    assert "MB written" in log.splitlines()[-2]


@pytest.mark.parametrize("audio, granularity, embedding, words", [
    (None, "utterance", False, "No audio"),
    ({"path": "x"}, "utterance", False, "must be an uploaded file"),
    ("x.wav", "sentence", False, "granularity must be one of"),
    ("x.wav", "utterance", "false", "embedding must be true or false"),
    ("/no/such/file.wav", "utterance", False, "file.wav: no such file"),
])
def test_handlers_refuse_with_a_message_and_write_nothing(handlers, audio, granularity, embedding, words, tmp_path):
    from emotion2vec_ui.web.requests import UserFacingError

    with pytest.raises(UserFacingError, match=words):
        handlers.api_predict(audio, granularity, embedding)
    assert not (tmp_path / "outputs").exists() or not any((tmp_path / "outputs").iterdir())


def test_a_bug_is_logged_with_its_traceback_and_the_user_told_plainly(handlers, wav_clip, caplog, monkeypatch):
    from emotion2vec_ui.web.requests import UserFacingError

    def broken(*args, **kwargs):
        raise KeyError("internal")

    monkeypatch.setattr(handlers.model, "recognize", broken)
    with pytest.raises(UserFacingError, match="a bug, logged on the server"):
        handlers.api_predict(str(wav_clip), "utterance", False)
    assert any(record.exc_info for record in caplog.records if record.levelname == "ERROR")


def test_a_random_weight_checkpoint_says_so_in_every_result(client, ui_server, wav_clip):  # noqa: F811
    """The test server's checkpoint was built by build-checkpoint: its results (the REST answer
    and result.json) are marked, and the app said so when it started."""
    from emotion2vec_ui.results import RANDOM_WEIGHTS_WARNING

    for granularity in ("utterance", "segment"):
        data, _ = predict(client, wav_clip, granularity)
        assert data["random_weights"] is True and data["model_warning"] == RANDOM_WEIGHTS_WARNING
        saved = json.loads((ui_server.output_dir / data["output_folder"] / "result.json").read_text(encoding="utf-8"))
        assert saved["random_weights"] is True and saved["model_warning"] == RANDOM_WEIGHTS_WARNING
    assert "its emotions are meaningless" in RANDOM_WEIGHTS_WARNING
    assert "has random weights (built by build-checkpoint" in ui_server.stderr_path.read_text()


def test_only_a_random_weight_model_gets_the_header_banner(tiny_model, tmp_path, monkeypatch):
    from emotion2vec_ui.settings import default_settings
    from emotion2vec_ui.web.page import build_demo

    def elem_ids() -> set:
        demo = build_demo(tiny_model, default_settings("server", output_dir=str(tmp_path)))
        return {block.elem_id for block in demo.blocks.values()}

    assert tiny_model.random_weights and "e2v-random-weights" in elem_ids()
    monkeypatch.setattr(type(tiny_model), "random_weights", property(lambda self: False))
    assert "e2v-random-weights" not in elem_ids()


def test_the_processing_log_counts_one_speaker_and_one_segment_in_the_singular(handlers, wav_clip):
    from emotion2vec_ui.web.page import EXAMPLE_AUDIO

    _, _, log, *_ = handlers.page_recognize(str(EXAMPLE_AUDIO), "segment", False)  # one sentence, one voice
    assert re.search(r"\[3/4\] 推理 Inference: segment on cpu in .* \(\d+× real time, 1 segment, 1 speaker\)", log), log
    _, _, log, *_ = handlers.page_recognize(str(wav_clip), "frame", False)
    assert re.search(r"\(\d+× real time, \d+ frames\)", log), log


def test_failed_logins_wait_longer_each_time():
    import asyncio

    from emotion2vec_ui.web.login import LOGIN_MAX_DELAY_S, LoginGuard

    now = [0.0]
    guard = LoginGuard("alice", "pw", clock=lambda: now[0])
    delays = []
    for _ in range(12):
        delays.append(guard.delay_s())
        guard.failures.append(now[0])
    assert delays == sorted(delays) and delays[0] < delays[3] and delays[-1] == LOGIN_MAX_DELAY_S
    now[0] += 3600  # an hour later the failures are forgotten
    assert guard.delay_s() == delays[0]
    assert asyncio.run(guard.check("alice", "pw")) is True


def test_the_header_lists_the_checkpoints_own_labels(tiny_model, monkeypatch):
    from emotion2vec_ui.web.page import _header_markdown

    monkeypatch.setattr(type(tiny_model), "labels", property(lambda self: ["angry", "happy", "sad"]))
    header = _header_markdown(tiny_model)
    assert "3 emotions" in header and "Neutral" not in header and "Happy" in header


def test_console_shows_the_address_without_a_share_hint(ui_server):  # noqa: F811
    """Gradio's own start-up lines end with a share=True hint that no option of the app supports."""
    import time

    line = f"* Running on local URL:  {ui_server.url}"
    deadline = time.monotonic() + 60  # the page answers a moment before launch() returns and prints
    while line not in ui_server.stdout_path.read_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    client_output = ui_server.stdout_path.read_text()
    assert line in client_output
    assert "share=True" not in client_output + ui_server.stderr_path.read_text()
