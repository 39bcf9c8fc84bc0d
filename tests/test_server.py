"""A server left running for others, tried over HTTP: privacy, bounded cache, clean errors for
malformed calls, a bounded load, a full queue, a login, a full disk, and the sweep after a kill."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.test_outputs import KILLED_MID_SAVE
from tests.test_ui_api import post_json, upload
from tests.ui_server import REPO, app_env, start_server, ui_server  # noqa: F401  (ui_server is a fixture)

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

pytestmark = pytest.mark.slow


def get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as e:
        return e.code


def call_events(url: str, data: list) -> tuple[str, dict | list | None]:
    """POST /gradio_api/call/predict with raw `data`, then read its event stream: (last event, its data)."""
    status, body = post_json(url + "gradio_api/call/predict", {"data": data})
    if status != 200:
        return f"http {status}", body
    with urllib.request.urlopen(f"{url}gradio_api/call/predict/{body['event_id']}", timeout=60) as stream:
        lines = [line for line in stream.read().decode().splitlines() if line]
    return lines[-2].removeprefix("event: "), json.loads(lines[-1].removeprefix("data: "))


def uploaded(url: str, path: Path) -> dict:
    status, body = upload(url, path)
    assert status == 200
    return {"path": json.loads(body)[0], "meta": {"_type": "gradio.FileData"}}


def tree_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def test_other_peoples_results_cannot_be_fetched(ui_server, wav_clip):  # noqa: F811
    client = Client(ui_server.url, verbose=False)
    data, files = client.predict(handle_file(str(wav_clip)), "utterance", True, api_name="/predict")
    folder = ui_server.output_dir / data["output_folder"]
    event, (mine, links) = call_events(ui_server.url, [uploaded(ui_server.url, wav_clip), "utterance", False])
    assert event == "complete"
    assert all(get(link["url"]) == 200 for link in links)  # one's own links work
    assert all(Path(link["path"]).parent.name not in (folder.name, mine["output_folder"]) for link in links)
    # Guessing the output folder, absolute or relative, by the file route: refused.
    for name in ("result.json", "processed_audio.wav", "embedding.npy"):
        for guess in (folder / name, Path("outputs") / folder.name / name):
            assert get(f"{ui_server.url}gradio_api/file={guess}") == 403, guess


MALFORMED = {  # what a call sends -> words its error must contain
    "missing arguments": ([], "takes 3 to 5 inputs"),
    "audio as {}": ([{}, "utterance", False], "must be an uploaded file"),
    "audio as a plain string": (["/home/someone/a-rather-long-folder-name/recordings-2026/clip.wav", "utterance",
                                 False], "clip.wav was sent as a path, and this server reads only files uploaded"),
    "audio as a long list": ([list(range(100)), "utterance", False], "not [0, 1, 2"),
    "a path outside the upload folder": ([{"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}},
                                          "utterance", False], "passwd was not uploaded"),
    "the example clip": ([{"path": str(REPO / "emotion2vec_ui/assets/example_zh.wav"),
                           "meta": {"_type": "gradio.FileData"}}, "utterance", False], "was not uploaded"),
    "a URL": ([{"path": "http://127.0.0.1:9/a.wav", "meta": {"_type": "gradio.FileData"}}, "utterance", False],
              "URLs are not fetched"),
    "embedding 'yes'": ([None, "utterance", "yes"], "embedding must be true or false"),
    "embedding 5": ([None, "utterance", 5], "embedding must be true or false"),
    "embedding [1]": ([None, "utterance", [1]], "embedding must be true or false"),
    "granularity 'sentence'": ([None, "sentence", False], "granularity must be one of utterance, frame"),
    "speakers 'stereo'": ([None, "segment", False, "stereo"], 'speakers must be "one", "channels"'),
    "speaker names as an object": ([None, "segment", False, "channels", {"a": 1}], "speaker_names must be text"),
    "speaker names repeated": ([None, "segment", False, "auto", ["a", "a"]], "speaker names must be distinct"),
}


def test_every_malformed_call_gets_a_specific_error_and_nothing_is_written(ui_server, wav_clip):  # noqa: F811
    before = sorted(ui_server.output_dir.iterdir()) if ui_server.output_dir.exists() else []
    upload_path = uploaded(ui_server.url, wav_clip)
    cases = dict(MALFORMED)
    # "false" as a string is not a boolean: refused, not taken as true.
    cases["embedding 'false'"] = ([upload_path, "utterance", "false"], "embedding must be true or false")
    cases["embedding 'no'"] = ([upload_path, "utterance", "no"], "embedding must be true or false")
    for case, (data, expected) in cases.items():
        event, body = call_events(ui_server.url, data)
        assert event == "error" and body["error"] and expected in body["error"], (case, body)
    after = sorted(ui_server.output_dir.iterdir()) if ui_server.output_dir.exists() else []
    assert after == before
    assert "Traceback" not in ui_server.stderr_path.read_text()
    event, _ = call_events(ui_server.url, [upload_path, "utterance", False])
    assert event == "complete"  # still serving


def test_api_errors_are_plain_text_not_html(ui_server, tmp_path):  # noqa: F811
    odd = tmp_path / "Tom & Jerry's take.wav"
    odd.write_text("not audio at all\n" * 20)
    with pytest.raises(AppError) as raised:
        Client(ui_server.url, verbose=False).predict(handle_file(str(odd)), "utterance", False, api_name="/predict")
    assert str(raised.value).startswith("Tom & Jerry's take.wav: not a recognised audio file")
    logged = "WARNING emotion2vec_ui.web.single: refused: Tom & Jerry's take.wav: not a recognised audio file"
    assert logged in ui_server.stderr_path.read_text()  # named once


def test_a_bounded_load_gets_every_answer_and_one_complete_folder_each(ui_server, audio_files):  # noqa: F811
    files = [path for case, path in sorted(audio_files.items()) if case.startswith(("wav", "flac", "mp3"))]
    clients, per_client = 4, 6
    before = set(ui_server.output_dir.iterdir()) if ui_server.output_dir.exists() else set()

    def work(index: int) -> list[str]:
        client = Client(ui_server.url, verbose=False)
        folders = []
        for n in range(per_client):
            path = files[(index + n) % len(files)]
            data, _ = client.predict(handle_file(str(path)), "utterance", False, api_name="/predict")
            assert data["input"] == Path(path).name
            folders.append(data["output_folder"])
        return folders

    with ThreadPoolExecutor(clients) as pool:
        answered = [folder for result in pool.map(work, range(clients)) for folder in result]
    new = set(ui_server.output_dir.iterdir()) - before
    assert len(answered) == len(set(answered)) == len(new) == clients * per_client
    assert all(sorted(p.name for p in folder.iterdir()) == ["processed_audio.wav", "result.json"] for folder in new)
    assert not list(ui_server.output_dir.glob(".incomplete_*"))


def test_the_cache_is_emptied_on_schedule_and_a_full_queue_says_so(tmp_path, tiny_checkpoint, wav_clip):
    server = start_server(tmp_path, tiny_checkpoint, "--cache-minutes", "0.05", "--queue-size", "1",
                          "--host", "0.0.0.0")
    try:
        assert "with no login: anyone who can reach this machine" in server.stderr_path.read_text()
        cache = tmp_path / "gradio"
        client = Client(server.url, verbose=False)
        for _ in range(3):
            client.predict(handle_file(str(wav_clip)), "frame", True, api_name="/predict")
        uploaded(server.url, wav_clip)  # an upload that is never recognised
        grown = tree_bytes(cache)
        assert grown > 3 * (wav_clip.stat().st_size)
        deadline = time.monotonic() + 30
        while tree_bytes(cache) > 0 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert tree_bytes(cache) == 0, f"cache still holds {tree_bytes(cache)} bytes"

        jobs = [client.submit(handle_file(str(wav_clip)), "frame", False, api_name="/predict") for _ in range(8)]
        outcomes = []
        for job in jobs:
            try:
                job.result(timeout=120)
                outcomes.append("done")
            except Exception as e:  # noqa: BLE001 (the client's queue-full error type varies)
                outcomes.append(str(e))
        assert "done" in outcomes and any("queue is full" in o.lower() for o in outcomes), outcomes
    finally:
        server.stop()


def test_login_full_disk_and_the_sweep_after_a_kill(tmp_path, tiny_checkpoint, wav_clip):
    out = tmp_path / "outputs"
    killed = subprocess.run([sys.executable, "-c", KILLED_MID_SAVE, str(tiny_checkpoint), str(wav_clip), str(out)],
                            capture_output=True, text=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL and [p.name[:12] for p in out.iterdir()] == [".incomplete_"]
    login = tmp_path / "login.txt"
    login.write_text("alice:correct horse\n")
    server = start_server(tmp_path, tiny_checkpoint, "--min-free-disk-mb", str(2**40),
                          env={"E2V_AUTH_FILE": str(login)})
    try:
        assert list(out.iterdir()) == []  # swept at start
        status, _ = post_form(server.url + "login", {"username": "alice", "password": "wrong"})
        assert status in (400, 401)
        client = Client(server.url, auth=("alice", "correct horse"), verbose=False)
        with pytest.raises(AppError, match="disk is nearly full"):
            client.predict(handle_file(str(wav_clip)), "utterance", False, api_name="/predict")
        assert list(out.iterdir()) == []
    finally:
        server.stop()


def test_a_port_in_use_is_refused_before_the_model_loads(tmp_path, tiny_checkpoint):
    with socket.create_server(("127.0.0.1", 0)) as holder:
        port = holder.getsockname()[1]
        run = subprocess.run([sys.executable, "app.py", "--port", str(port), "--log-level", "DEBUG"], cwd=REPO,
                             env=app_env(tiny_checkpoint, tmp_path / "outputs", tmp_path / "gradio"),
                             capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run.stderr
    assert f"error: cannot serve on 127.0.0.1:{port}" in run.stderr and "--port N or E2V_PORT=N" in run.stderr
    assert "Traceback" not in run.stderr and "loaded and warmed up" not in run.stderr


def post_form(url: str, fields: dict) -> tuple[int, bytes]:
    from urllib.parse import urlencode

    request = urllib.request.Request(url, data=urlencode(fields).encode(), method="POST",
                                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
