"""The page's batch: its files (uploads and .zip archives, safely, within limits), its rows,
summary.csv and zip, the page's updates, fair turns on the model, and the REST API
`predict_batch` on the real server through gradio_client."""

from __future__ import annotations

import csv
import io
import re
import stat
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from emotion2vec_ui.audio.testdata import voice_like, write_audio
from emotion2vec_ui.web.batch_upload import BatchLimitError, BatchLimits, gather_uploads
from emotion2vec_ui.web.turns import ModelTurns, TakingTurns
from tests.ui_server import BATCH_MAX_FILES, BATCH_MAX_MB, ui_server  # noqa: F401  (ui_server is a fixture)

LIMITS = BatchLimits(max_files=10, max_total_bytes=10 * 2**20, max_file_bytes=2 * 2**20)


def clip(folder: Path, name: str, seconds: float = 1.5, seed: int = 0, channels: int = 1) -> Path:
    return write_audio(folder / name, voice_like(seconds, 16_000, channels, seed=seed), 16_000, "wav")


def make_zip(path: Path, entries: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, target)
    return path


# -- the files of a batch -------------------------------------------------------------------


def test_archives_are_extracted_safely_and_odd_entries_reported(tmp_path):
    audio = clip(tmp_path, "one.wav").read_bytes()
    archive = make_zip(tmp_path / "calls.zip", {
        "day1/one.wav": audio,
        "day2/one.wav": audio,  # the same name in another folder: both kept
        "../../escape.wav": audio,
        "/etc/abs.wav": audio,
        "readme.txt": b"notes",
        "inner.zip": b"PK",
        "__MACOSX/day1/._one.wav": b"resource fork",
        ".DS_Store": b"junk",
    }, links={"link.wav": "/etc/passwd"})
    plain = clip(tmp_path, "plain.wav")
    work = tmp_path / "work"
    files = gather_uploads([str(plain), str(archive)], work, LIMITS)
    by_name = {f.name: f for f in files}
    assert list(by_name) == ["plain.wav", "calls.zip/day1/one.wav", "calls.zip/day2/one.wav",
                             "calls.zip/../../escape.wav", "calls.zip//etc/abs.wav", "calls.zip/readme.txt",
                             "calls.zip/inner.zip", "calls.zip/link.wav"]
    assert by_name["plain.wav"].path == plain
    for name in ("calls.zip/day1/one.wav", "calls.zip/day2/one.wav"):
        assert not by_name[name].error and by_name[name].path.parent == work
        assert by_name[name].path.read_bytes() == audio
    assert "unsafe path" in by_name["calls.zip/../../escape.wav"].error
    assert "unsafe path" in by_name["calls.zip//etc/abs.wav"].error
    assert "not an audio file" in by_name["calls.zip/readme.txt"].error
    assert "archives inside an archive" in by_name["calls.zip/inner.zip"].error
    assert "a link" in by_name["calls.zip/link.wav"].error
    assert sorted(p.name for p in work.iterdir()) == ["00000.wav", "00001.wav"]  # nothing else written
    assert not (tmp_path.parent / "escape.wav").exists() and not (tmp_path / "escape.wav").exists()


def test_limits_are_checked_before_anything_is_extracted(tmp_path):
    audio = clip(tmp_path, "a.wav").read_bytes()
    eleven = make_zip(tmp_path / "eleven.zip", {f"c{i}.wav": audio for i in range(11)})
    with pytest.raises(BatchLimitError, match="holds 11 audio files; this server takes at most 10"):
        gather_uploads([str(eleven)], tmp_path / "work", LIMITS)
    assert not (tmp_path / "work").exists()
    small = BatchLimits(max_files=10, max_total_bytes=len(audio) * 2, max_file_bytes=2 * 2**20)
    with pytest.raises(BatchLimitError, match=r"MB of audio; this server takes at most .* MB per batch"):
        gather_uploads([str(tmp_path / "a.wav")] * 3, tmp_path / "work", small)
    with pytest.raises(BatchLimitError, match="No audio files in this batch"):
        gather_uploads([str(make_zip(tmp_path / "text.zip", {"a.txt": b"x"}))], tmp_path / "work", LIMITS)
    big = make_zip(tmp_path / "big.zip", {"long.wav": b"\0" * (3 * 2**20), "ok.wav": audio})
    files = gather_uploads([str(big)], tmp_path / "work", LIMITS)
    assert "over this server's limit of 2 MB per file" in files[0].error and not files[1].error


def test_an_archive_that_lies_about_its_sizes_is_cut_off(tmp_path):
    audio = clip(tmp_path, "a.wav").read_bytes()
    archive = make_zip(tmp_path / "liar.zip", {"a.wav": audio})
    data = bytearray(archive.read_bytes())
    # Declare 100 bytes uncompressed in both headers (stored entry: the data is the file).
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as z:
        info = z.infolist()[0]
    real = info.file_size.to_bytes(4, "little")
    fake = (100).to_bytes(4, "little")
    assert data.count(real) >= 2
    archive.write_bytes(bytes(data).replace(real, fake))
    files = gather_uploads([str(archive)], tmp_path / "work", LIMITS)
    assert files[0].path is None and "cannot be extracted" in files[0].error
    assert not list((tmp_path / "work").iterdir())


def test_a_damaged_archive_is_one_failed_row(tmp_path):
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"PK\x03\x04 not really a zip")
    files = gather_uploads([str(broken), str(clip(tmp_path, "ok.wav"))], tmp_path / "work", LIMITS)
    assert files[0].name == "broken.zip" and "not a readable .zip archive" in files[0].error
    assert not files[1].error


# -- the batch on the tiny model ------------------------------------------------------------


@pytest.fixture
def batch(tiny_model, tmp_path):
    from emotion2vec_ui.settings import default_settings
    from emotion2vec_ui.web.batch import PageBatch

    settings = default_settings("server", output_dir=str(tmp_path / "outputs"), batch_max_files=8)
    return PageBatch(TakingTurns(tiny_model), settings)


def test_rows_summary_csv_and_zip_with_bad_files_in_the_middle(batch, tmp_path):
    good = [clip(tmp_path, f"take_{i}.wav", seed=i) for i in range(3)]
    text = tmp_path / "notes.wav"
    text.write_text("not audio\n" * 30)
    quiet = tmp_path / "quiet.wav"
    sf.write(quiet, np.zeros(8_000, dtype=np.float32), 16_000)
    archive = make_zip(tmp_path / "more.zip", {"x/in_zip.wav": good[0].read_bytes(), "readme.md": b"hi"})
    plan = batch.plan([str(good[0]), str(text), str(archive), str(good[1]), str(good[2]), str(quiet)],
                      "frame", True, "one")
    rows = list(batch.rows(plan))
    assert [r["file"] for r in rows] == ["take_0.wav", "notes.wav", "more.zip/x/in_zip.wav", "more.zip/readme.md",
                                         "take_1.wav", "take_2.wav", "quiet.wav"]
    assert "Short clip: 0.50 s" in rows[-1]["warnings"] and "Nearly silent" in rows[-1]["warnings"]
    assert [r["warnings"] for r in rows[:-1]] == [""] * 6
    failed = {r["file"]: r["error"] for r in rows if r["error"]}
    assert list(failed) == ["notes.wav", "more.zip/readme.md"]
    assert failed["notes.wav"].startswith("notes.wav: not a recognised audio file")
    assert not plan.workdir.exists()  # the extracted files are gone
    good_rows = [r for r in rows if not r["error"]]
    assert rows[2]["scores"] == rows[0]["scores"]  # the zipped copy of take_0 scores the same
    for row in good_rows:
        assert row["emotion"] == max(row["scores"], key=row["scores"].get)
        assert row["confidence"] >= row["second_confidence"]
        assert row["duration_s"] == pytest.approx(0.5 if row["file"] == "quiet.wav" else 1.5)
        folder = Path(batch.settings.output_dir) / row["output_folder"]
        assert sorted(p.name for p in folder.iterdir()) == ["embedding.npy", "processed_audio.wav", "result.json"]

    outcome = batch.finish(plan, rows)
    summary_csv, archive_out = (Path(p) for p in outcome.downloads)
    assert summary_csv.name == "summary.csv" and archive_out.suffix == ".zip"
    with open(summary_csv, encoding="utf-8-sig", newline="") as f:
        table = list(csv.DictReader(f))
    assert [r["file"] for r in table] == [r["file"] for r in rows]
    assert table[1]["error"] == failed["notes.wav"] and table[1]["emotion"] == ""
    assert float(table[0][f"score_{rows[0]['emotion']}"]) == rows[0]["confidence"]
    assert table[-1]["warnings"] == rows[-1]["warnings"] and table[0]["warnings"] == ""
    with zipfile.ZipFile(archive_out) as z:
        names = set(z.namelist())
    expected = {"summary.csv"} | {f"{r['output_folder']}/{n}" for r in good_rows
                                  for n in ("embedding.npy", "processed_audio.wav", "result.json")}
    assert names == expected
    assert outcome.summary["files"] == 7 and outcome.summary["failed"] == 2
    assert sum(outcome.summary["emotion_counts"].values()) == 5
    assert outcome.summary["random_weights"] is True  # the tiny checkpoint's


def test_the_line_under_the_upload_box_counts_the_chosen_files(tmp_path):
    from emotion2vec_ui.settings import default_settings
    from emotion2vec_ui.web.batch import selection_html

    settings = default_settings("server", batch_max_files=3, batch_max_mb=1.0)
    files = [tmp_path / f"f{i}.wav" for i in range(4)]
    for number, file in enumerate(files):
        file.write_bytes(b"x" * (300_000 + number))
    assert "No files chosen" in selection_html(None, settings) and "No files chosen" in selection_html([], settings)
    one = selection_html([str(files[0])], settings)
    assert "已选 <b>1</b> 个文件 · 1 file, 293 KB" in one and "limit" not in one
    three = selection_html([str(f) for f in files[:3]], settings)
    assert "3 files, 879 KB" in three and "limit" not in three
    over = selection_html([str(f) for f in files], settings)
    assert "4 files, 1.1 MB" in over and "over this server's limit of 3 files, 1 MB per batch" in over
    archive = make_zip(tmp_path / "calls.zip", {"a.wav": b"x"})
    zipped = selection_html([str(files[0]), str(archive)], settings)
    assert "2 files" in zipped and "1 .zip archive: its audio files are counted when the batch starts" in zipped


def test_each_finished_file_of_a_batch_is_logged(batch, tmp_path, caplog):
    """One line per file on the server: its name, audio duration, emotion or error, seconds."""
    good = [clip(tmp_path, f"take_{i}.wav", seconds=1.5 + i, seed=i) for i in range(2)]
    text = tmp_path / "notes.wav"
    text.write_text("not audio\n" * 30)
    caplog.set_level("INFO", logger="emotion2vec_ui")
    rows = list(batch.rows(batch.plan([str(good[0]), str(text), str(good[1])], "utterance", False, "one")))
    lines = [record.getMessage() for record in caplog.records if record.name == "emotion2vec_ui.web.batch"
             and record.getMessage().startswith("batch file ")]
    assert len(lines) == 3, lines
    assert re.fullmatch(rf"batch file 1/3: take_0\.wav \(1\.5 s of audio\): {rows[0]['emotion']} "
                        rf"{100 * rows[0]['confidence']:.1f}% in \d+\.\d\d s \(recognised with 1 other file\) -> "
                        rf"{rows[0]['output_folder']}", lines[0]), lines[0]
    assert re.fullmatch(r"batch file 2/3: notes\.wav failed after \d+\.\d\d s: notes\.wav: not a recognised audio "
                        r"file.*", lines[1]), lines[1]
    assert lines[2].startswith("batch file 3/3: take_1.wav (2.5 s of audio): ")


@pytest.mark.parametrize("files, options, words", [
    (None, ("utterance", False, "one"), "No files"),
    ([], ("utterance", False, "one"), "No files"),
    ([{"path": "x"}], ("utterance", False, "one"), "must be a list of uploaded files"),
    (["x.wav"], ("sentence", False, "one"), "granularity must be one of utterance, frame, segment"),
    (["x.wav"], ("utterance", "yes", "one"), "embedding must be true or false"),
    (["x.wav"], ("segment", False, "everyone"), 'speakers must be "one", "channels"'),
])
def test_unusable_calls_are_refused_with_a_message(batch, files, options, words):
    from emotion2vec_ui.web.requests import RequestError

    with pytest.raises(RequestError, match=words):
        batch.plan(files, *options)


def test_segment_mode_with_one_speaker_per_channel(batch, tmp_path):
    stereo = clip(tmp_path, "call.wav", seconds=3.0, channels=2)
    mono = clip(tmp_path, "mono.wav")
    rows = list(batch.rows(batch.plan([str(stereo), str(mono)], "segment", False, "channels")))
    assert rows[0]["error"] == "" and rows[0]["output_folder"]
    assert "mono.wav" in rows[1]["error"] and "channel" in rows[1]["error"]


def test_the_page_sees_rows_as_they_finish_then_chart_and_downloads(batch, tmp_path):
    from emotion2vec_ui.web.batch import page_updates, progress_html

    files = [str(clip(tmp_path, f"c{i}.wav", seed=i)) for i in range(3)]
    views = list(page_updates(batch, batch.plan(files, "utterance", False, "one")))
    table_sizes = [len(view.table) for view in views]
    assert table_sizes == sorted(table_sizes) and {1, 2, 3} <= set(table_sizes)
    assert all(view.chart is None for view in views[:-1])
    last = views[-1]
    assert "3 / 3" in last.progress and len(last.downloads) == 2
    assert last.chart["files"].sum() == 3 and list(last.chart.columns) == ["emotion", "files"]
    assert "当前文件 Current file: <b>c0.wav</b>" in views[0].progress
    group = progress_html(1, 5, 0, ["c1.wav", "c2.wav", "c3.wav"], 0.5, "推理 Inference")
    assert "Current files: <b>c1.wav … c3.wav (3)</b> · 推理 Inference 50%" in group


class NotedTurns(TakingTurns):
    """The shared model as the page holds it, noting the files each turn recognises; it
    fails on the file named `fail_on` (a model fault that only that file meets)."""

    def __init__(self, recognizer, batch_audio_s: float | None = None, fail_on: str | None = None):
        super().__init__(recognizer)
        self.turn_files: list[list[str]] = []
        self.batch_audio_s = batch_audio_s or recognizer.batch_audio_s
        self.fail_on = fail_on

    def recognize(self, audios, *args, **kwargs):
        self.turn_files.append([audio.name for audio in audios])
        if self.fail_on in self.turn_files[-1]:
            raise RuntimeError(f"a fault on {self.fail_on}")
        return super().recognize(audios, *args, **kwargs)


def test_files_are_recognised_in_groups_of_the_models_audio_in_flight(tiny_model, tmp_path):
    from emotion2vec_ui.settings import default_settings
    from emotion2vec_ui.web.batch import PageBatch

    settings = default_settings("server", output_dir=str(tmp_path / "outputs"))
    files = [clip(tmp_path, "a.wav", seed=1), clip(tmp_path, "b.wav", seed=2), clip(tmp_path, "c.wav", seed=3),
             clip(tmp_path, "long.wav", seconds=5.0, seed=4), clip(tmp_path, "d.wav", seed=5), tmp_path / "bad.wav"]
    files[-1].write_text("not audio\n" * 30)
    model = NotedTurns(tiny_model, batch_audio_s=4.0)  # 1.5 s clips: two fit, a third does not
    batch = PageBatch(model, settings)
    rows = list(batch.rows(batch.plan([str(f) for f in files], "utterance", False, "one")))
    assert model.turn_files == [["a.wav", "b.wav"], ["c.wav"], ["long.wav"], ["d.wav"]]
    assert [row["file"] for row in rows] == ["a.wav", "b.wav", "c.wav", "long.wav", "d.wav", "bad.wav"]
    assert [bool(row["error"]) for row in rows] == [False] * 5 + [True]
    for file, row in zip(files, rows[:5]):  # together or alone, a file scores the same (rows keep 4 decimals)
        alone = tiny_model.recognize([tiny_model.decode(str(file))])[0].scores
        assert row["scores"] == pytest.approx(alone, abs=1e-4)

    everything = NotedTurns(tiny_model)  # the CPU's 60 s: every file in one turn
    batch = PageBatch(everything, settings)
    list(batch.rows(batch.plan([str(f) for f in files], "utterance", False, "one")))
    assert everything.turn_files == [["a.wav", "b.wav", "c.wav", "long.wav", "d.wav"]]


def test_a_fault_on_one_file_of_a_group_stays_with_that_file(tiny_model, tmp_path):
    from emotion2vec_ui.settings import default_settings
    from emotion2vec_ui.web.batch import PageBatch

    settings = default_settings("server", output_dir=str(tmp_path / "outputs"))
    files = [str(clip(tmp_path, f"{name}.wav", seed=seed)) for seed, name in enumerate("abc")]
    model = NotedTurns(tiny_model, fail_on="b.wav")
    batch = PageBatch(model, settings)
    rows = list(batch.rows(batch.plan(files, "frame", False, "one")))
    assert model.turn_files == [["a.wav", "b.wav", "c.wav"], ["a.wav"], ["b.wav"], ["c.wav"]]
    assert [row["error"] for row in rows] == [
        "", "b.wav: the server failed on this file (a bug, logged on the server); the rest of the batch went on.", ""]
    assert all((Path(settings.output_dir) / row["output_folder"]).is_dir() for row in (rows[0], rows[2]))


# -- fairness -------------------------------------------------------------------------------


def test_turns_are_first_come_first_served():
    """A turn asked for while the batch holds the model runs before the batch's next file."""
    turns = ModelTurns()
    order, started = [], threading.Event()

    def batch() -> None:
        for number in range(3):
            with turns.turn():
                started.set()
                order.append(f"batch {number}")
                time.sleep(0.2)

    def single() -> None:
        started.wait()
        with turns.turn():
            order.append("single")

    threads = [threading.Thread(target=batch), threading.Thread(target=single)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert order == ["batch 0", "single", "batch 1", "batch 2"]
    assert turns.waiting == 0


def test_a_recognizer_taking_turns_is_the_recognizer(tiny_model, wav_clip):
    shared = TakingTurns(tiny_model)
    assert shared.labels == tiny_model.labels and shared.model_name == tiny_model.model_name
    audio = shared.decode(str(wav_clip))
    assert shared.recognize([audio])[0].scores == tiny_model.recognize([audio])[0].scores


# -- the REST API on the real server ---------------------------------------------------------

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402


@pytest.fixture(scope="module")
def client(ui_server):  # noqa: F811
    return Client(ui_server.url, verbose=False)


def predict_batch(client, paths, granularity="utterance", embedding=False, speakers="one"):
    return client.predict([handle_file(str(p)) for p in paths], granularity, embedding, speakers,
                          api_name="/predict_batch")


def test_rest_batch_with_bad_files_inside(client, ui_server, tmp_path):  # noqa: F811
    good = [clip(tmp_path, f"call_{i}.wav", seed=i) for i in range(3)]
    empty = tmp_path / "empty.mp3"
    empty.write_bytes(b"")
    text = tmp_path / "notes.wav"
    text.write_text("not audio\n" * 30)
    archive = make_zip(tmp_path / "calls.zip", {"in/zipped.wav": good[1].read_bytes(), "readme.txt": b"x"})
    summary, downloads = predict_batch(client, [good[0], empty, archive, text, good[2]], "frame", True)
    rows = summary["rows"]
    assert [r["file"] for r in rows] == ["call_0.wav", "empty.mp3", "calls.zip/in/zipped.wav", "calls.zip/readme.txt",
                                         "notes.wav", "call_2.wav"]
    assert (summary["files"], summary["recognised"], summary["failed"]) == (6, 3, 3)
    assert summary["random_weights"] is True and "meaningless" in summary["model_warning"]  # a build-checkpoint model
    errors = {r["file"]: r["error"] for r in rows if r["error"]}
    assert errors["empty.mp3"].startswith("empty.mp3: ") and errors["notes.wav"].startswith("notes.wav: not a recognised")
    assert "not an audio file" in errors["calls.zip/readme.txt"]
    assert all(str(tmp_path) not in e and "/gradio" not in e for e in errors.values())
    for row in rows:
        if not row["error"]:
            saved = ui_server.output_dir / row["output_folder"] / "result.json"
            assert saved.exists() and '"granularity": "frame"' in saved.read_text(encoding="utf-8")
    summary_csv, archive_out = (Path(p) for p in downloads)
    assert summary_csv.name == "summary.csv"
    assert summary_csv.read_text(encoding="utf-8-sig").splitlines()[0].startswith("file,duration_s,emotion,")
    with zipfile.ZipFile(archive_out) as z:
        folders = {name.split("/")[0] for name in z.namelist() if "/" in name}
    assert folders == {r["output_folder"] for r in rows if not r["error"]}


def test_rest_batch_limits_and_bad_calls_are_plain_messages(client, tmp_path):
    one = clip(tmp_path, "one.wav")
    with pytest.raises(AppError, match=f"holds {BATCH_MAX_FILES + 1} audio files; this server takes at most "
                                       f"{BATCH_MAX_FILES} per batch"):
        predict_batch(client, [one] * (BATCH_MAX_FILES + 1))
    big = tmp_path / "big.wav"
    big.write_bytes(b"\0" * int(BATCH_MAX_MB * 2**20 / 3 + 1024))
    with pytest.raises(AppError, match=rf"this server takes at most {BATCH_MAX_MB:g} MB per batch"):
        predict_batch(client, [big, big, big, one])
    with pytest.raises(AppError, match="No files"):
        client.predict([], "utterance", False, "one", api_name="/predict_batch")
    with pytest.raises(AppError, match="granularity must be one of utterance, frame, segment"):
        predict_batch(client, [one], "sentence")
    summary, _ = predict_batch(client, [one])  # still serving
    assert summary["recognised"] == 1


def test_rest_batch_takes_any_speaker_count_as_text_or_number(client, tmp_path):
    """The page offers 2 and 3 speakers; the API takes any count, as /predict does."""
    one = clip(tmp_path, "one.wav", seconds=3.0)
    for speakers in ("4", 2):
        summary, _ = predict_batch(client, [one], "segment", False, speakers)
        assert (summary["recognised"], summary["failed"]) == (1, 0), speakers
    with pytest.raises(AppError, match="speakers must be"):
        predict_batch(client, [one], "segment", False, "0")
    with pytest.raises(AppError, match='apply to granularity "segment" only'):
        predict_batch(client, [one], "utterance", False, "channels")


BATCH_MALFORMED = {  # what a predict_batch call sends -> words its error must contain
    "missing arguments": ([], "predict_batch takes 4 inputs"),
    "files as plain strings": ([["a.wav"], "utterance", False, "one"], "files[0] must be an uploaded file"),
    "a path outside the upload folder": ([[{"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}}],
                                          "utterance", False, "one"], "files[0]: passwd was not uploaded"),
    "a URL": ([[{"path": "http://127.0.0.1:9/a.wav", "meta": {"_type": "gradio.FileData"}}], "utterance", False,
               "one"], "files[0]: URLs are not fetched"),
    "speakers 'everyone'": ([None, "segment", False, "everyone"], 'speakers must be "one"'),
    "embedding 'no'": ([None, "utterance", "no", "one"], "embedding must be true or false"),
}


def test_malformed_batch_calls_get_specific_errors(ui_server):  # noqa: F811
    import json
    import urllib.request

    from tests.test_ui_api import post_json

    for case, (data, expected) in BATCH_MALFORMED.items():
        status, body = post_json(ui_server.url + "gradio_api/call/predict_batch", {"data": data})
        assert status == 200, (case, body)
        with urllib.request.urlopen(f"{ui_server.url}gradio_api/call/predict_batch/{body['event_id']}",
                                    timeout=60) as stream:
            lines = [line for line in stream.read().decode().splitlines() if line]
        event, answer = lines[-2].removeprefix("event: "), json.loads(lines[-1].removeprefix("data: "))
        assert event == "error" and expected in answer["error"], (case, answer)
    assert "Traceback" not in ui_server.stderr_path.read_text()
