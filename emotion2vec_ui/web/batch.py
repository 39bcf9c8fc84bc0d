"""The page's 批量处理 (Batch) tab and the REST API `predict_batch`: many files at once.

    batch = PageBatch(model, settings, serve)    # model: a turns.TakingTurns shared with /predict
    plan = batch.plan(files, "utterance", False, "one")   # RequestError / BatchLimitError
    rows = list(batch.rows(plan))                # one row per file, as each finishes
    outcome = batch.finish(plan, rows)           # summary.csv and the batch's .zip, served

`plan` checks a call's values and gathers its files (uploads and the audio inside .zip
archives, see batch_upload.py) within the server's limits (`batch_max_files`,
`batch_max_mb`). `rows` recognises the files in groups of consecutive files, as many
as the model computes at once (about a minute of audio on a CPU, or one longer file),
so its lanes run them side by side; each good file gets its output folder (as a single
recognition does) and a row, a bad one a row with its error, and the batch goes on.
`finish` writes summary.csv and one .zip holding it and every output folder of the
batch, served as private copies like single results.

Fairness: a batch runs in the same Gradio queue as single recognitions (at most
`queue_size` requests wait) and one batch runs at a time. While it runs it takes the
model one group at a time, in first-come order with the single recognitions
(turns.py): a recognition that arrives mid-batch waits at most for the group in
progress, then the batch goes on.
"""

from __future__ import annotations

import csv
import html
import logging
import queue
import shutil
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import gradio as gr
import pandas as pd

from ..batch.rows import no_verdict, verdict
from ..engine.recognizer import ProgressCallback
from ..errors import Emotion2vecError
from ..outputs.folders import check_free_space, save_recognition
from ..results import RANDOM_WEIGHTS_WARNING, counted, label_for, noun_for
from ..settings import Settings
from .batch_upload import BatchFile, BatchLimitError, BatchLimits, gather_uploads, remove_workdir
from .conversation import SPEAKER_CHOICES
from .requests import RequestError, UserFacingError, check_options
from .views import EMOTION_COLORS, GRANULARITIES, emotion_name

log = logging.getLogger(__name__)

BATCH_CONCURRENCY_ID = "batch"  # one batch at a time; the model itself is shared in turns
GRANULARITY_CHOICES = {key: label for key, (label, _) in GRANULARITIES.items()}  # value -> radio label
API_INPUTS = ("files", "granularity", "embedding", "speakers")
API_EXAMPLE = ('client.predict([handle_file("a.wav"), handle_file("calls.zip")], "utterance", False, "one", '
               'api_name="/predict_batch")')
SUMMARY_FILE = "summary.csv"
ZIP_PREFIX = "emotion2vec_batch_"
STORED_SUFFIXES = (".wav", ".npy")  # already dense: stored in the zip, not compressed
PROGRESS_EVERY_S = 0.3  # the page's progress is redrawn at most this often
RUN_LABEL = "📦 开始批量识别 Run the batch"  # the tab's button
BATCH_CSS = """
#e2v-batch-downloads .label-clear-button { display: none; }  /* downloads are output only: nothing to remove */
.e2v-batch-selection { font-size: 14px; }
"""
TABLE_COLUMNS = ["文件 File", "时长 Duration", "情绪 Emotion", "置信度 Confidence", "次要情绪 Second emotion",
                 "输出文件夹或错误 Output folder, or the error"]  # a file has one or the other
TABLE_WIDTHS = ["17%", "10%", "16%", "10%", "19%", "28%"]
FAILED = "❌ 失败 Failed"
# (fraction of the group done 0..1, what it does, the group's positions in the plan's files)
GroupProgress = Callable[[float, str, range], None]


@dataclass
class BatchPlan:
    """A checked batch: its files, options, and the folder its archives were extracted to."""

    files: list[BatchFile]
    granularity: str
    embedding: bool
    speakers: str | int | None
    workdir: Path


@dataclass
class BatchOutcome:
    """A finished batch: its rows, the served downloads (summary.csv, the .zip), the summary JSON."""

    rows: list[dict]
    downloads: list[str]
    summary: dict = field(default_factory=dict)


class PageBatch:
    """Batches for one server: `model` (a TakingTurns), its `settings`, and `serve`, which
    turns files into private copies the web server may hand out (see ui.serve_copies;
    default: copies in a new temporary folder, for use without a server)."""

    def __init__(self, model, settings: Settings, serve: Callable[[list[Path]], list[str]] | None = None):
        self.model = model
        self.settings = settings
        self.serve = serve or _copies_in_temp

    @property
    def limits(self) -> BatchLimits:
        return BatchLimits(self.settings.batch_max_files, int(self.settings.batch_max_mb * 2**20),
                           self.settings.max_file_bytes)

    def plan(self, files, granularity, embedding, speakers) -> BatchPlan:
        """A checked batch, or RequestError (unusable values) / BatchLimitError (over a limit)."""
        speakers = check_batch_options(granularity, embedding, speakers)
        if files is None or files == [] or files == "":
            raise RequestError("No files: add audio files or a .zip of audio files first (请先添加音频文件).")
        if isinstance(files, str):
            files = [files]
        if not isinstance(files, list) or not all(isinstance(f, str) and f for f in files):
            raise RequestError(f"files must be a list of uploaded files. Call: {API_EXAMPLE}")
        workdir = Path(tempfile.mkdtemp(prefix="e2v_batch_"))
        try:
            gathered = gather_uploads(files, workdir, self.limits)
        except BaseException:
            remove_workdir(workdir)
            raise
        return BatchPlan(gathered, granularity, embedding, speakers if granularity == "segment" else None, workdir)

    def rows(self, plan: BatchPlan, progress: GroupProgress | None = None,
             stop: threading.Event | None = None) -> Iterator[dict]:
        """Recognise the plan's files in order, one row each (see `summary_row`); a bad
        file's row holds its error. Files are decoded one by one and recognised in groups
        (see `_groups`), so the model's lanes run several files side by side;
        `progress(fraction, text, files)` follows the group in progress (`files`: its
        positions in `plan.files`). Stops early when `stop` is set, after the group in
        progress. The extracted archives are deleted at the end."""
        try:
            for group in self._groups(plan, progress, stop):
                yield from self._group_rows(group, plan, progress)
        finally:
            remove_workdir(plan.workdir)

    def finish(self, plan: BatchPlan, rows: list[dict]) -> BatchOutcome:
        """Write summary.csv and the batch's .zip (summary.csv and every output folder), serve them."""
        stamp = datetime.now().strftime("%Y%m%d_%H%M%S")
        staging = Path(tempfile.mkdtemp(prefix="e2v_batch_out_"))
        try:
            summary_csv = staging / SUMMARY_FILE
            write_summary_csv(rows, self.model.labels, summary_csv)
            archive = staging / f"{ZIP_PREFIX}{stamp}.zip"
            write_batch_zip(archive, summary_csv, [Path(self.settings.output_dir) / row["output_folder"]
                                                   for row in rows if row["output_folder"]])
            downloads = self.serve([summary_csv, archive])
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return BatchOutcome(rows, downloads, batch_summary(rows, plan, self.model.labels,
                                                          random_weights=self.model.random_weights))

    def _groups(self, plan: BatchPlan, progress: GroupProgress | None,
                stop: threading.Event | None) -> Iterator[list[_Decoded]]:
        """The plan's files, decoded, in groups of consecutive files that take one turn on
        the model: as many as fit the model's audio in flight (`batch_audio_s`, 60 s on a
        CPU), or one longer file; one file a group in segment mode (one recording at a time)."""
        budget = 0.0 if plan.granularity == "segment" else self.model.batch_audio_s
        group: list[_Decoded] = []
        audio_s = 0.0
        for position, file in enumerate(plan.files):
            if stop is not None and stop.is_set():
                return
            decoded = self._decode(position, file, plan, progress)
            seconds = decoded.audio.duration_s if decoded.audio is not None else 0.0
            if group and audio_s + seconds > budget:
                yield group
                group, audio_s = [], 0.0
            group.append(decoded)
            audio_s += seconds
        if group and not (stop is not None and stop.is_set()):
            yield group

    def _decode(self, position: int, file: BatchFile, plan: BatchPlan,
                progress: GroupProgress | None) -> _Decoded:
        if file.error:
            return _Decoded(position, file, error=file.error)
        if progress:
            progress(0.0, "解码 Decoding", range(position, position + 1))
        started = time.perf_counter()
        try:
            decoded = _Decoded(position, file, self.model.decode(
                file.path, name=file.name, keep_channels=plan.speakers == "channels"))
        except Exception as e:  # noqa: BLE001 (a bad file is its row's error; the batch goes on)
            decoded = _Decoded(position, file, error=_row_error(file.name, e))
        decoded.decode_s = time.perf_counter() - started
        return decoded

    def _group_rows(self, group: list[_Decoded], plan: BatchPlan, progress: GroupProgress | None) -> Iterator[dict]:
        """The group's rows in order: its decoded files recognised in one turn, each result saved."""
        files = range(group[0].position, group[-1].position + 1)
        step = (lambda fraction, text: progress(fraction, text, files)) if progress else (lambda fraction, text: None)
        ready = [decoded for decoded in group if decoded.audio is not None]
        started = time.perf_counter()
        if ready:
            step(0.05, "等待模型 Waiting for the model")
            inference = lambda fraction, text: step(0.05 + 0.9 * fraction, f"推理 Inference: {text}")  # noqa: E731
            for decoded, outcome in zip(ready, self._recognized(ready, plan, inference)):
                if isinstance(outcome, str):
                    decoded.error = outcome
                else:
                    decoded.result = outcome
            step(0.97, "保存 Saving")
        recognition_s = time.perf_counter() - started if ready else 0.0
        for decoded in group:
            saving = time.perf_counter()
            row = self._saved_row(decoded)
            seconds = decoded.decode_s + (recognition_s if decoded.audio is not None else 0.0)
            _log_row(row, decoded, len(plan.files), seconds + time.perf_counter() - saving, len(ready))
            yield row

    def _saved_row(self, decoded: _Decoded) -> dict:
        """The file's row: its result, saved in its own output folder, or its error."""
        if decoded.result is None:
            return error_row(decoded.file.name, decoded.error)
        try:
            check_free_space(self.settings.output_dir, int(self.settings.min_free_disk_mb * 2**20))
            folder = save_recognition(decoded.result, decoded.audio, self.settings.output_dir)
        except Exception as e:  # noqa: BLE001 (as above)
            return error_row(decoded.file.name, _row_error(decoded.file.name, e))
        return summary_row(decoded.file.name, decoded.result, folder.name)

    def _recognized(self, ready: list[_Decoded], plan: BatchPlan, progress: ProgressCallback) -> list:
        """Each decoded file's result, or its error message: the files in one turn; if that
        fails, each file again in a turn of its own, so an error stays with its file."""
        try:
            check_free_space(self.settings.output_dir, int(self.settings.min_free_disk_mb * 2**20))
            return self.model.recognize([decoded.audio for decoded in ready], plan.granularity, plan.embedding,
                                        progress, speakers=plan.speakers)
        except Exception as e:  # noqa: BLE001 (as above)
            if len(ready) == 1:
                return [_row_error(ready[0].file.name, e)]
        return [self._recognized([decoded], plan, progress)[0] for decoded in ready]


@dataclass
class _Decoded:
    """A file of a group: its position in the plan, its audio (None when it failed), then
    its result, or the error its row will show."""

    position: int
    file: BatchFile
    audio: object = None  # audio.Audio
    error: str = ""
    result: object = None  # results.EmotionResult
    decode_s: float = 0.0  # seconds its decoding took


def _row_error(name: str, error: Exception) -> str:
    """The row's message for a failure: the refusal's own words, or a plain note of a bug (logged)."""
    if isinstance(error, Emotion2vecError):
        log.warning("batch: refused %s: %s", name, error)
        return str(error)
    log.error("batch: recognition of %s failed", name, exc_info=error)
    return f"{name}: the server failed on this file (a bug, logged on the server); the rest of the batch went on."


def _log_row(row: dict, decoded: _Decoded, total: int, seconds: float, together: int) -> None:
    """The server's line for a finished file of a batch: its name and audio duration, then its
    emotion and output folder, or its error; `seconds` are its decoding, the recognition of its
    group (`together` files recognised at once) and its saving."""
    where = f"batch file {decoded.position + 1}/{total}: {row['file']}"
    if row["error"]:
        log.info("%s failed after %.2f s: %s", where, seconds, row["error"])
        return
    group = f" (recognised with {counted(together - 1, 'other file')})" if together > 1 else ""
    log.info("%s (%.1f s of audio): %s %.1f%% in %.2f s%s -> %s", where, row["duration_s"], row["emotion"],
             100 * row["confidence"], seconds, group, row["output_folder"])


def _copies_in_temp(files: list[Path]) -> list[str]:
    folder = Path(tempfile.mkdtemp(prefix="e2v_batch_served_"))
    return [str(shutil.copyfile(file, folder / file.name)) for file in files]


# -- rows, summary.csv, the zip -------------------------------------------------------------


def summary_row(name: str, result, output_folder: str) -> dict:
    """A recognised file's row: file, duration_s, emotion, confidence, second_emotion,
    second_confidence, scores {label: probability}, output_folder, warnings (short or
    nearly silent clip, "; "-joined; "" when none), error ("")."""
    fields = verdict(result)
    return {
        "file": name, "duration_s": round(fields["duration_s"], 3), "emotion": fields["emotion"],
        "confidence": round(fields["confidence"], 4), "second_emotion": fields["second_emotion"],
        "second_confidence": None if fields["second_confidence"] is None else round(fields["second_confidence"], 4),
        "scores": {label: round(score, 4) for label, score in fields["scores"].items()},
        "output_folder": output_folder, "warnings": "; ".join(result.warnings), "error": "",
    }


def error_row(name: str, error: str) -> dict:
    """A failed file's row: only `file` and `error` are filled."""
    return {"file": name, **no_verdict(), "output_folder": None, "warnings": "", "error": error}


def summary_columns(labels: list[str]) -> list[str]:
    """summary.csv's columns: the row's fields with one score_<label> column per label."""
    return ["file", "duration_s", "emotion", "confidence", "second_emotion", "second_confidence",
            *(f"score_{label}" for label in labels), "output_folder", "warnings", "error"]


def write_summary_csv(rows: list[dict], labels: list[str], path: Path) -> None:
    """summary.csv: one line per file (UTF-8 with a BOM, so spreadsheet programs read the names)."""
    with open(path, "w", encoding="utf-8-sig", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(summary_columns(labels))
        for row in rows:
            flat = {**row, **{f"score_{label}": row["scores"].get(label) for label in labels}}
            writer.writerow("" if flat[column] is None else flat[column] for column in summary_columns(labels))


def write_batch_zip(path: Path, summary_csv: Path, folders: list[Path]) -> None:
    """One .zip holding summary.csv and each output folder (as `outputs_.../file`)."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.write(summary_csv, SUMMARY_FILE, compress_type=zipfile.ZIP_DEFLATED)
        for folder in folders:
            for file in sorted(folder.iterdir()):
                stored = file.suffix in STORED_SUFFIXES
                archive.write(file, f"{folder.name}/{file.name}",
                              compress_type=zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED)


def batch_summary(rows: list[dict], plan: BatchPlan, labels: list[str], random_weights: bool = False) -> dict:
    """The API's JSON: counts, files per emotion (the model's labels, in order), and the rows;
    with `random_weights` (a model built with random weights) also `random_weights: true` and
    `model_warning`, as in each result.json."""
    good = [row for row in rows if not row["error"]]
    summary = {
        "files": len(rows), "recognised": len(good), "failed": len(rows) - len(good),
        "granularity": plan.granularity, "embedding": plan.embedding,
        "emotion_counts": {label: sum(row["emotion"] == label for row in good) for label in labels},
        "rows": rows,
    }
    if random_weights:
        summary |= {"random_weights": True, "model_warning": RANDOM_WEIGHTS_WARNING}
    return summary


# -- checks ---------------------------------------------------------------------------------


def check_batch_options(granularity, embedding, speakers) -> str | int | None:
    """RequestError unless the options are usable (the engine's check, see requests.py);
    returns the speaker mode (None: one speaker). A JSON number 2.0 counts as 2."""
    if isinstance(speakers, float) and speakers.is_integer():
        speakers = int(speakers)
    return check_options(granularity, embedding, speakers)[0]


def malformed_batch_message(inputs: list, error: Exception) -> str:
    """What is wrong with a predict_batch call that Gradio could not hand to the handler."""
    if len(inputs) < len(API_INPUTS):
        return (f"predict_batch takes {len(API_INPUTS)} inputs ({', '.join(API_INPUTS)}); this call sent "
                f"{len(inputs)}. Call: {API_EXAMPLE}")
    files, granularity, embedding, speakers = inputs[: len(API_INPUTS)]
    try:
        check_batch_options(granularity, embedding, speakers)
    except RequestError as e:
        return str(e)
    upload_hint = ("Upload each file first (gradio_client's handle_file, or POST /gradio_api/upload) and pass "
                   'a list of {"path": <the returned path>, "meta": {"_type": "gradio.FileData"}}.')
    items = files if isinstance(files, list) else [files]
    for number, item in enumerate(items):
        path = item.get("path") if isinstance(item, dict) else None
        if isinstance(path, str) and path.startswith(("http://", "https://")):
            return f"files[{number}]: URLs are not fetched by this server. {upload_hint}"
        if isinstance(path, str) and path:
            return f"files[{number}]: {Path(path).name} was not uploaded to this server, so it cannot be read. {upload_hint}"
        if item is not None:
            return f"files[{number}] must be an uploaded file, not {str(item)[:80]}. {upload_hint}"
    return f"The call's values cannot be used ({str(error).splitlines()[0][:200]}). Call: {API_EXAMPLE}"


# -- what the page shows --------------------------------------------------------------------


def table_rows(rows: list[dict]):
    """The page's results table (a DataFrame with bilingual column names); a failed file
    shows FAILED as its emotion and its error in the last column."""

    shown = [
        [row["file"],
         "" if row["duration_s"] is None else f"{row['duration_s']:.2f} s",
         FAILED if row["error"] else label_for(row["emotion"]).display,
         "" if row["error"] else f"{row['confidence']:.1%}",
         "" if row["error"] or not row["second_emotion"] else
         f"{label_for(row['second_emotion']).display} {row['second_confidence']:.1%}",
         row["error"] or row["output_folder"]]
        for row in rows
    ]
    return pd.DataFrame(shown, columns=TABLE_COLUMNS)


def emotion_counts_frame(rows: list[dict], labels: list[str]):
    """The chart's data: files per emotion (columns emotion, files), every label in the model's order."""

    good = [row["emotion"] for row in rows if not row["error"]]
    return pd.DataFrame({"emotion": [emotion_name(label) for label in labels],
                         "files": [good.count(label) for label in labels]})


def progress_html(done: int, total: int, failed: int, current: list[str] | None = None, fraction: float = 0.0,
                  step: str = "") -> str:
    """Two bars: the batch (files finished of all) and the files in progress (`current`, their names)."""
    batch_bar = _bar(done / total if total else 0.0, "#4f46e5")
    head = (f"批次 Batch: <b>{done} / {total}</b> 个文件完成 {noun_for(total, 'file')} done"
            + (f" · <span style='color:#d62828'>{failed} 失败 failed</span>" if failed else ""))
    if current is None:
        return f'<div class="e2v-batch-progress"><div>{head}</div>{batch_bar}</div>'
    return (
        f'<div class="e2v-batch-progress"><div>{head}</div>{batch_bar}'
        f'<div class="e2v-meta">当前文件 Current {"file" if len(current) == 1 else "files"}: '
        f'<b>{html.escape(_span(current))}</b> · {html.escape(step)} '
        f"{fraction:.0%}</div>{_bar(fraction, '#f4a100')}</div>"
    )


def _positions(files: range) -> str:
    """A group's files counted from 1: "3" or "3-6"."""
    return f"{files.start + 1}" if len(files) == 1 else f"{files.start + 1}-{files.stop}"


def _span(names: list[str]) -> str:
    """`names` as one short line: "a.wav", "a.wav, b.wav", or "a.wav … d.wav (4)"."""
    return ", ".join(names) if len(names) <= 2 else f"{names[0]} … {names[-1]} ({len(names)})"


def idle_html(settings: Settings) -> str:
    return (
        '<div class="e2v-card e2v-empty">等待文件 · Waiting for files<br><small>'
        f"拖入多个音频文件或一个 .zip，然后点击 {RUN_LABEL} · drop audio files or a .zip, then press "
        f"{RUN_LABEL} (at most {counted(settings.batch_max_files, 'file')}, {settings.batch_max_mb:g} MB per batch)"
        "</small></div>"
    )


def selection_html(files, settings: Settings) -> str:
    """The line under the upload box: how many files are chosen and their size ("已选 6 个文件 ·
    6 files, 12.3 MB"), the .zip archives among them (whose audio is counted when the batch
    starts), and a warning when the other files alone are over the batch's limits."""
    paths = [str(f) for f in ([files] if isinstance(files, (str, Path)) else files or []) if f]
    if not paths:
        return '<div class="e2v-batch-selection">未选择文件 · No files chosen</div>'
    sizes = {path: _file_bytes(path) for path in paths}
    archives = [path for path in paths if path.lower().endswith(".zip")]
    text = f"已选 <b>{len(paths)}</b> 个文件 · {counted(len(paths), 'file')}, {_size_text(sum(sizes.values()))}"
    if archives:
        their = "its" if len(archives) == 1 else "their"
        text += (f" (含 {len(archives)} 个 .zip，其中的音频在开始时计数 · {counted(len(archives), '.zip archive')}: "
                 f"{their} audio files are counted when the batch starts)")
    plain = [path for path in paths if path not in archives]
    plain_bytes = sum(sizes[path] for path in plain)
    if len(plain) > settings.batch_max_files or plain_bytes > settings.batch_max_mb * 2**20:
        text += (f'<br><span style="color:#d62828">⚠️ 超出限制 over this server\'s limit of '
                 f"{counted(settings.batch_max_files, 'file')}, {settings.batch_max_mb:g} MB per batch</span>")
    return f'<div class="e2v-batch-selection">{text}</div>'


def _file_bytes(path: str) -> int:
    try:
        return Path(path).stat().st_size
    except OSError:  # gone from the upload folder: it counts as nothing
        return 0


def _size_text(size: int) -> str:
    """12.3 MB; 85 KB under a megabyte; 512 B under a kilobyte."""
    if size >= 2**20:
        return f"{size / 2**20:.1f} MB"
    return f"{size / 1024:.0f} KB" if size >= 1024 else f"{size} B"


def done_html(rows: list[dict], seconds: float) -> str:
    failed = sum(bool(row["error"]) for row in rows)
    return (progress_html(len(rows), len(rows), failed)
            + f'<div class="e2v-meta">完成 Finished in {seconds:.1f} s · {len(rows) - failed} recognised, '
              f"{failed} failed · 下载见下方 downloads below</div>")


def _bar(fraction: float, color: str) -> str:
    return (f'<div class="e2v-bar" style="--e2v-color: {color}"><span style="width: '
            f'{max(0.0, min(fraction, 1.0)) * 100:.1f}%"></span></div>')


@dataclass
class PageView:
    """One update of the tab: progress HTML, the table, and (when done) the chart and downloads."""

    progress: str
    table: object  # DataFrame
    chart: object | None = None  # DataFrame, only when the batch is done
    downloads: list[str] | None = None


def page_updates(batch: PageBatch, plan: BatchPlan) -> Iterator[PageView]:
    """The tab's updates while `plan` runs: the progress of the files in progress (at most
    every PROGRESS_EVERY_S), a new table row as each file finishes, then the chart and downloads.

    The batch runs on a worker thread so its progress can be shown while the model works;
    closing this generator (the page went away) stops the batch after the group in progress.
    """
    events: queue.Queue = queue.Queue()
    stop = threading.Event()
    started = time.monotonic()

    def work() -> None:
        rows: list[dict] = []
        try:
            for row in batch.rows(plan, lambda fraction, text, files: events.put(("progress", fraction, text, files)),
                                  stop):
                rows.append(row)
                events.put(("row", row))
            events.put(("done", batch.finish(plan, rows) if not stop.is_set() else None))
        except BaseException as e:  # noqa: BLE001 (handed to the page's thread, which re-raises)
            events.put(("crash", e))

    worker = threading.Thread(target=work, name="page-batch", daemon=True)
    worker.start()
    rows: list[dict] = []
    total, failed = len(plan.files), 0
    in_progress, fraction, step, shown_at = range(0, 1), 0.0, "", 0.0

    def names() -> list[str] | None:
        return [plan.files[position].name for position in in_progress] if in_progress else None

    yield PageView(progress_html(0, total, 0, names()), table_rows(rows))
    try:
        while True:
            kind, *payload = events.get()
            if kind == "crash":
                raise payload[0]
            if kind == "done":
                outcome = payload[0]
                failed_rows = sum(bool(row["error"]) for row in rows)
                log.info("page batch of %s: %d recognised, %d failed in %.1f s", counted(len(rows), "file"),
                         len(rows) - failed_rows, failed_rows, time.monotonic() - started)
                yield PageView(done_html(rows, time.monotonic() - started), table_rows(rows),
                               emotion_counts_frame(rows, batch.model.labels), outcome.downloads)
                return
            if kind == "progress":
                fraction, step, in_progress = payload
                if time.monotonic() - shown_at < PROGRESS_EVERY_S:
                    continue
            else:
                rows.append(payload[0])
                failed += bool(payload[0]["error"])
                if len(rows) >= in_progress.stop:  # the group is done: the next file is next
                    in_progress = range(len(rows), min(len(rows) + 1, total))
                    fraction, step = 0.0, ""
            shown_at = time.monotonic()
            yield PageView(progress_html(len(rows), total, failed, names(), fraction, step), table_rows(rows))
    finally:
        stop.set()


# -- the Gradio tab -------------------------------------------------------------------------


def batch_tab(model, settings: Settings, serve: Callable[[list[Path]], list[str]]) -> None:
    """The tab's components and events, built inside the caller's `gr.Tab`; `model` is the
    TakingTurns the page's other recognitions use, `serve` ui.serve_copies for this demo.
    Adds the REST API `predict_batch`."""

    batch = PageBatch(model, settings, serve)
    color_map = {emotion_name(key): EMOTION_COLORS.get(key, "#888888") for key in model.labels}

    def refused(e: Exception) -> UserFacingError:
        if isinstance(e, (RequestError, BatchLimitError)):
            log.warning("refused a batch: %s", e)
            return UserFacingError(str(e), "批量请求无效 Batch refused")
        log.exception("a batch failed")
        return UserFacingError("The server failed on this batch (a bug, logged on the server); please try again "
                               "or report it.", "内部错误 Internal error")

    def run_page(files, granularity, embedding, speakers):
        """The tab's button: yields (progress, table, chart, downloads) as the batch goes. The
        speaker choice is hidden, and left out, unless the granularity is segment."""
        try:
            plan = batch.plan(files, granularity, embedding, speakers if granularity == "segment" else "one")
        except Exception as e:  # noqa: BLE001 (every refusal is shown on the page)
            error = refused(e)
            gr.Warning(html.escape(error.message, quote=False), duration=20, title=error.title)
            card = (f'<div class="e2v-card e2v-error"><div><b>{html.escape(error.title)}</b><br>'
                    f"{html.escape(error.message, quote=False)}</div></div>")
            yield card, None, gr.update(visible=False), None
            return
        for view in page_updates(batch, plan):
            done = view.chart is not None
            yield (view.progress, view.table, gr.update(value=view.chart, visible=True) if done else gr.skip(),
                   view.downloads if done else gr.skip())

    def predict_batch(files, granularity="utterance", embedding=False, speakers="one", progress=gr.Progress()):
        """Recognise many audio files (or .zip archives of them) in one call.

        files: uploaded files; granularity: "utterance", "frame" or "segment"; embedding:
        also save embedding.npy per file; speakers (segment only): "one", "channels",
        "auto" or a number. Returns the summary JSON (counts, files per emotion, one row
        per file: file, duration_s, emotion, confidence, second_emotion, scores,
        output_folder, or error) and the downloads: summary.csv and one .zip of every
        output folder. A bad file gets a row with its error; the batch goes on.
        """
        try:
            plan = batch.plan(files, granularity, embedding, speakers)
            total = len(plan.files)
            rows = [row for row in batch.rows(plan, lambda fraction, text, files: progress(
                (files.start + fraction * len(files)) / total,
                desc=f"{_positions(files)}/{total}: {text}"))]
            outcome = batch.finish(plan, rows)
        except Exception as e:  # noqa: BLE001 (every failure is answered in plain text)
            error = refused(e)
            raise gr.Error(error.message, title=error.title, duration=20, print_exception=False) from None
        log.info("batch of %s: %d recognised, %d failed", counted(len(rows), "file"), outcome.summary["recognised"],
                 outcome.summary["failed"])
        return outcome.summary, outcome.downloads

    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=320):
            files_input = gr.File(
                label="音频文件 · Audio files / .zip", file_count="multiple", type="filepath",
                elem_id="e2v-batch-files", height=220,
            )
            selection = gr.HTML(selection_html(None, settings), elem_id="e2v-batch-selection")
            run_button = gr.Button(RUN_LABEL, variant="primary", size="lg", elem_id="e2v-batch-run")
            gr.Markdown(
                "一次拖入多个文件，或一个装有音频的 .zip · drop many files at once, or a .zip of audio files. "
                f"每批最多 At most **{settings.batch_max_files}** 个文件 "
                f"{noun_for(settings.batch_max_files, 'file')}, **{settings.batch_max_mb:g} MB**.",
                elem_classes="e2v-help",
            )
            granularity_input = gr.Radio(
                [(label, value) for value, label in GRANULARITY_CHOICES.items()], value="utterance",
                label="识别粒度 Granularity", elem_id="e2v-batch-granularity",
            )
            speakers_input = gr.Dropdown(
                [(label, value) for value, label in SPEAKER_CHOICES.items()], value="one", visible=False,
                label="说话人 Speakers (segment)", elem_id="e2v-batch-speakers",
            )
            embedding_input = gr.Checkbox(label="提取 Embedding 特征", value=False, elem_id="e2v-batch-embedding",
                                          info="每个文件另存 embedding.npy · also save each file's features")
        with gr.Column(scale=3, min_width=480):
            progress_box = gr.HTML(idle_html(settings), elem_id="e2v-batch-progress")
            table = gr.Dataframe(
                headers=TABLE_COLUMNS, label="结果 Results", interactive=False, wrap=True, max_height=420,
                column_widths=TABLE_WIDTHS,
                elem_id="e2v-batch-table",
            )
            chart = gr.BarPlot(
                x="emotion", y="files", color="emotion", color_map=color_map, colors_in_legend=[],
                sort=list(color_map), x_title="情绪 Emotion", y_title="文件数 Files", x_label_angle=-35,
                height=280, label="本批情绪分布 Emotions across the batch", show_label=True, visible=False,
                elem_id="e2v-batch-chart",
            )
            downloads = gr.File(
                label="下载 Downloads (summary.csv · 全部输出文件夹 all output folders .zip)", file_count="multiple",
                interactive=False, elem_id="e2v-batch-downloads",
            )
    inputs = [files_input, granularity_input, embedding_input, speakers_input]
    files_input.change(lambda files: selection_html(files, settings), files_input, selection,
                       api_visibility="private", queue=False)
    granularity_input.change(lambda g: gr.update(visible=g == "segment"), granularity_input, speakers_input,
                             api_visibility="private", queue=False)
    run_button.click(
        run_page, inputs=inputs, outputs=[progress_box, table, chart, downloads], api_visibility="private",
        concurrency_limit=1, concurrency_id=BATCH_CONCURRENCY_ID, show_progress_on=[progress_box],
    )
    api_json = gr.JSON(visible=False)
    api_trigger = gr.Button(visible=False)
    api_speakers = gr.Textbox("one", visible=False)  # text, so any count is accepted (the dropdown offers 2, 3)
    api_trigger.click(
        predict_batch, inputs=[*inputs[:3], api_speakers], outputs=[api_json, downloads], api_name="predict_batch",
        concurrency_limit=1, concurrency_id=BATCH_CONCURRENCY_ID,
    )
