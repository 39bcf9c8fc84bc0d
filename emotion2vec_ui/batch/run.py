"""Many recordings into one results table (the library behind the `batch` command).

`run_batch` is the core (the command, and any other front end, call it): it expands
the inputs (files, folders, manifests), skips those already in the table (same path,
size and modification time), recognises the rest with `Recognizer.iter_recognitions`
(the next files decode while the model runs), and writes the rows in parts that are
merged into the table at the end (see table.py), so an interrupted run loses at
most the rows in flight and a rerun picks up where it stopped. `iter_batch_rows` gives
the rows of decoded inputs without any table, for a front end that keeps them itself.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..audio.vad import VadSettings
from ..interrupts import ctrl_c_noted
from ..outputs.folders import save_recognition
from ..results import counted
from .manifest import BatchInput, batch_input, discover_inputs
from .table import ResultTable, error_row, result_row, rows_to_table, table_schema

DEFAULT_OUT = "results.parquet"
ROWS_PER_PART = 32  # rows per part file: at most this many finished rows are lost on a kill -9
PART_SECONDS = 60.0  # a part is also written when its first row is this old

RowCallback = Callable[[dict], None]  # called with each new row as it is added


@dataclass
class BatchSummary:
    """What a batch run did. `failed` counts the inputs whose row is an error, new or kept."""

    out: Path
    inputs: int = 0
    done: int = 0  # recognised in this run
    skipped: int = 0  # already in the table
    failed: int = 0
    failed_before: int = 0  # of `failed`: skipped inputs whose kept row is an error
    rows: int = 0  # rows in the committed table
    interrupted: bool = False
    seconds: float = 0.0
    audio_seconds: float = 0.0  # of the inputs recognised in this run
    new_rows: list[dict] = field(default_factory=list, repr=False)  # only with keep_rows=True

    @property
    def line(self) -> str:
        state = "interrupted (rerun the same command to go on): " if self.interrupted else ""
        before = (f" ({self.failed_before} of them in earlier runs: --retry-failed redoes those)"
                  if self.failed_before else "")
        return (f"{state}done {self.done}, skipped {self.skipped}, failed {self.failed}{before} -> "
                f"{self.out} ({counted(self.rows, 'row')}, {self.seconds:.1f} s)")


def batch_schema(recognizer, granularity: str = "utterance", embedding: bool = False):
    """The table schema (pyarrow) of a recognizer's rows."""

    return table_schema(recognizer.labels, granularity, embedding)


def iter_batch_rows(
    recognizer,
    items: Iterable[BatchInput | str | os.PathLike],
    granularity: str = "utterance",
    embedding: bool = False,
    *,
    save_folders: str | os.PathLike | None = None,
    speakers=None,
) -> Iterator[dict]:
    """One row per input, in input order (see batch_table.py for the columns); bad inputs
    give error rows and the rest go on. With `save_folders` every recognised input also
    gets its output folder there (`output_dir`). `speakers`: the segment mode's speaker
    mode (None, "channels", "auto" or a count)."""

    items = [item if isinstance(item, BatchInput) else batch_input(item) for item in items]
    recognitions = recognizer.iter_recognitions([item.path for item in items], granularity, embedding,
                                               speakers=speakers)
    settings = {"segment_settings": segment_settings(speakers, recognizer.vad)} if granularity == "segment" else {}
    for item, rec in zip(items, recognitions):
        if rec.error is not None:
            yield {**error_row(item, rec.error, recognizer.model_name, granularity), **settings}
            continue
        folder = None
        if save_folders is not None:
            try:
                folder = str(save_recognition(rec.result, rec.audio, save_folders))
            except OSError as e:
                yield {**error_row(item, OSError(f"could not write the output folder in {save_folders}: {e}"),
                                   recognizer.model_name, granularity), **settings}
                continue
        yield {**result_row(item, rec.result, output_dir=folder), **settings}


def segment_settings(speakers, vad) -> str:
    """Segment mode's speaker mode and VAD settings (vad.VadSettings, None: the defaults) as
    one line, stored with each row so a resumed table keeps to them."""

    vad = vad or VadSettings()
    return (f"speakers={speakers or 'one'}, vad_threshold={vad.threshold:g}, min_speech_s={vad.min_speech_s:g}, "
            f"join_gap_s={vad.join_gap_s:g}, max_segment_s={vad.max_segment_s:g}, pad_s={vad.pad_s:g}")


def run_batch(
    recognizer,
    inputs: Iterable[str | os.PathLike | BatchInput],
    out: str | os.PathLike = DEFAULT_OUT,
    granularity: str = "utterance",
    embedding: bool = False,
    *,
    save_folders: str | os.PathLike | None = None,
    retry_failed: bool = False,
    rows_per_part: int = ROWS_PER_PART,
    on_row: RowCallback | None = None,
    on_start: Callable[[int], None] | None = None,
    keep_rows: bool = False,
    speakers=None,
) -> BatchSummary:
    """Recognise `inputs` (files, folders, manifests) into the table `out` (.parquet, .csv, .jsonl).

    Inputs already in the table are skipped (`retry_failed=True` redoes those that
    failed). Ctrl-C commits the finished rows and returns with `interrupted` set.
    `on_start` gets the number of inputs to recognise, `on_row` each new row;
    `keep_rows=True` also returns the new rows in `new_rows`.
    """

    started = time.monotonic()
    table = ResultTable(out)
    schema = batch_schema(recognizer, granularity, embedding)
    same = {"model": recognizer.model_name,
            "segment_settings": segment_settings(speakers, recognizer.vad) if granularity == "segment" else None}
    todo, summary = plan_batch(table, inputs, schema, retry_failed, same=same)
    if on_start:
        on_start(len(todo))
    pending: list[dict] = []
    pending_since = time.monotonic()

    def flush() -> None:
        nonlocal pending, pending_since
        if pending:
            table.append(rows_to_table(pending, schema))
        pending, pending_since = [], time.monotonic()

    try:
        with ctrl_c_noted() as ctrl_c:
            for row in iter_batch_rows(recognizer, todo, granularity, embedding, save_folders=save_folders,
                                       speakers=speakers):
                pending.append(row)
                summary.failed += bool(row["error"])
                summary.done += not row["error"]
                summary.audio_seconds += row.get("duration_s") or 0.0
                if keep_rows:
                    summary.new_rows.append(row)
                if on_row:
                    on_row(row)
                if len(pending) >= rows_per_part or time.monotonic() - pending_since >= PART_SECONDS:
                    flush()
                if ctrl_c.is_set():  # its KeyboardInterrupt was lost on the way
                    raise KeyboardInterrupt
    except KeyboardInterrupt:
        summary.interrupted = True
    flush()
    summary.rows = table.commit()
    summary.seconds = time.monotonic() - started
    return summary


def plan_batch(table, inputs, schema, retry_failed: bool, *, existing=None,
               same: dict | None = None) -> tuple[list[BatchInput], BatchSummary]:
    """(inputs still to do, a summary with `inputs`, `skipped` and the skipped ones that failed before set).

    Raises BatchTableError if the table exists with other columns than `schema` (None: not
    checked), or with other values in the `same` columns (model, segment_settings; see
    ResultTable.check_schema). `existing` is the table already read, if it was.
    """
    items = [item if isinstance(item, BatchInput) else None for item in inputs]
    if any(item is None for item in items):
        items = discover_inputs(inputs)
    existing = table.read() if existing is None else existing
    table.check_schema(schema, existing, same)
    done_ok = table.done_keys(existing, failed=False)
    done_all = table.done_keys(existing) if not retry_failed else done_ok
    todo = [item for item in items if item.key not in done_all]
    skipped = [item for item in items if item.key in done_all]
    existing_failed = sum(item.key not in done_ok for item in skipped)
    summary = BatchSummary(out=table.path, inputs=len(items), skipped=len(skipped), failed=existing_failed,
                           failed_before=existing_failed)
    return todo, summary
