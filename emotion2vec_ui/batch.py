"""Many recordings into one results table: `python -m emotion2vec_ui batch INPUT... --out results.parquet`.

`run_batch` is the core (the command, and any other front end, call it): it expands
the inputs (files, folders, manifests), skips those already in the table (same path,
size and modification time), recognises the rest with `Recognizer.iter_recognitions`
(the next files decode while the model runs), and writes the rows in parts that are
merged into the table at the end (see batch_table.py), so an interrupted run loses at
most the rows in flight and a rerun picks up where it stopped. `iter_batch_rows` gives
the rows of decoded inputs without any table, for a front end that keeps them itself.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .conversation import speakers_option
from .errors import Emotion2vecError
from .manifest import BatchInput, batch_input, discover_inputs
from .results import GRANULARITIES

DEFAULT_OUT = "results.parquet"
ROWS_PER_PART = 32  # rows per part file: at most this many finished rows are lost on a kill -9
PART_SECONDS = 60.0  # a part is also written when its first row is this old
ENGINES = ("local", "ray")
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

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
                f"{self.out} ({self.rows} row{'' if self.rows == 1 else 's'}, {self.seconds:.1f} s)")


def batch_schema(recognizer, granularity: str = "utterance", embedding: bool = False):
    """The table schema (pyarrow) of a recognizer's rows."""
    from .batch_table import table_schema

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
    from .batch_table import error_row, result_row
    from .outputs import save_recognition

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
    from .vad import VadSettings

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
    from .batch_table import ResultTable, rows_to_table

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


def python_handles_ctrl_c() -> bool:
    """True in the main thread while Python's own Ctrl-C handler is installed (not in a
    background job, where SIGINT is ignored, nor under another handler)."""
    return threading.current_thread() is threading.main_thread() and \
        signal.getsignal(signal.SIGINT) is signal.default_int_handler


@contextmanager
def ctrl_c_noted() -> Iterator[threading.Event]:
    """An Event that Ctrl-C (SIGINT) sets besides raising KeyboardInterrupt as usual, so a
    run still stops at its next row when the exception is lost (Python only prints one
    raised inside a finaliser). Only where Python's own Ctrl-C handler is installed and
    only in the main thread; elsewhere the Event is never set."""
    noted = threading.Event()
    if not python_handles_ctrl_c():
        yield noted
        return

    def note_and_interrupt(signum, frame):
        noted.set()
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, note_and_interrupt)
    try:
        yield noted
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


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


class BatchProgress:
    """A one-line progress bar on stderr: files, files/s, audio-s/s and the ETA."""

    def __init__(self, width: int = 24, stream=None):
        self.width = width
        self.stream = stream or sys.stderr
        self.start(0)

    def start(self, total: int) -> None:
        """Begin counting `total` files from now."""
        self.total = max(total, 1)
        self.started = time.monotonic()
        self.files = 0
        self.audio_s = 0.0

    def __call__(self, row: dict) -> None:
        self.files += 1
        self.audio_s += row.get("duration_s") or 0.0
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = self.files / elapsed
        eta = (self.total - self.files) / rate if rate > 0 else 0.0
        filled = int(self.width * min(self.files / self.total, 1.0))
        bar = "#" * filled + "-" * (self.width - filled)
        text = (f"\r[{bar}] {self.files}/{self.total} files  {rate:.2f} files/s  "
                f"{self.audio_s / elapsed:.1f} audio-s/s  ETA {_clock(eta)} ")
        print(text, end="", file=self.stream, flush=True)

    def clear(self) -> None:
        print("\r" + " " * (self.width + 80) + "\r", end="", file=self.stream, flush=True)


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


# -- the command line -----------------------------------------------------------------


def add_batch_command(commands) -> None:
    """Add the `batch` subcommand to the CLI's subparsers (with the CLI's settings flags)."""
    from .settings import add_options

    batch = commands.add_parser(
        "batch", help="recognise many files into one results table (resumable)",
        description="Recognise files, folders (searched recursively) and manifests (.txt one path per line, "
                    ".csv with a 'path' column) into one table. Rerun the same command to resume.",
    )
    batch.add_argument("inputs", nargs="+", metavar="INPUT", help="audio files, folders or manifests")
    batch.add_argument("--out", default=DEFAULT_OUT, metavar="TABLE",
                       help="results table: .parquet (default results.parquet), .csv or .jsonl")
    batch.add_argument("--granularity", choices=GRANULARITIES, default="utterance",
                       help="one verdict per file (utterance), also a 20 ms track (frame), or one per "
                            "speech segment (segment)")
    batch.add_argument("--speakers", default=None, type=speakers_option, metavar="one|channels|auto|N",
                       help="segment mode: one speaker (the default), one speaker per channel, speakers found "
                            "automatically, or N speakers")
    batch.add_argument("--embedding", action="store_true", help="add the embedding column (float32 list)")
    batch.add_argument("--save-folders", action="store_true",
                       help="also write an output folder per file (under --output-dir)")
    batch.add_argument("--retry-failed", action="store_true", help="redo inputs whose row is an error")
    batch.add_argument("--rows-per-part", type=int, default=ROWS_PER_PART, metavar="N",
                       help=f"rows committed together (default {ROWS_PER_PART}): a kill loses at most these")
    batch.add_argument("--quiet", action="store_true", help="no progress bar and no per-file errors")
    add_options(batch, "cli")
    ray = batch.add_argument_group("engine", "run on Ray Data (pip install 'ray[data]', or '.[ray]' in the project folder)")
    ray.add_argument("--engine", choices=ENGINES, default="local", help="local (default) or ray")
    ray.add_argument("--address", default=None, help="Ray cluster to join (e.g. auto or HOST:6379); "
                     "default: start a local Ray")
    ray.add_argument("--workers", type=int, default=1, metavar="N", help="model actors (default 1)")
    ray.add_argument("--gpus-per-worker", type=float, default=0.0, metavar="G", help="GPUs per actor (default 0)")
    ray.add_argument("--cpus-per-worker", type=float, default=1.0, metavar="C",
                     help="CPUs per actor, and the threads its model computes on (default 1)")


def run_batch_command(args: argparse.Namespace, settings) -> int:
    """The `batch` command with the resolved `settings` (settings.Settings): 0 when every
    input has a good row, 1 when any failed, 2 for usage errors, 130 when interrupted
    (finished rows are kept)."""
    from .batch_table import BatchTableError, table_format

    if args.speakers is not None and args.granularity != "segment":
        print("error: --speakers applies to --granularity segment only", file=sys.stderr)
        return EXIT_USAGE
    try:
        table_format(args.out)
    except BatchTableError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    try:
        items = discover_inputs(args.inputs)
    except Emotion2vecError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    if not items:
        print("error: no audio files found in the inputs", file=sys.stderr)
        return EXIT_USAGE
    progress = None if args.quiet or not sys.stderr.isatty() else BatchProgress()
    save_folders = settings.output_dir if args.save_folders else None

    def on_row(row: dict) -> None:
        if progress:
            progress.clear()
        if row["error"] and not args.quiet:
            print(f"{row['path']}\tERROR\t{row['error']}", file=sys.stderr)
        if progress:
            progress(row)

    try:
        if args.engine == "ray":
            from .batch_ray import run_batch_ray

            summary = run_batch_ray(
                items, args.out, args.granularity, args.embedding, model=settings.model,
                engine_options=settings.engine_options(), address=args.address, workers=args.workers,
                gpus_per_worker=args.gpus_per_worker, cpus_per_worker=args.cpus_per_worker,
                rows_per_part=args.rows_per_part, retry_failed=args.retry_failed,
                save_folders=save_folders, on_row=on_row, on_start=progress.start if progress else None,
                speakers=args.speakers,
            )
        else:
            from .pipeline import load_model

            recognizer = load_model(settings.model, **settings.engine_options())
            summary = run_batch(
                recognizer, items, args.out, args.granularity, args.embedding, save_folders=save_folders,
                retry_failed=args.retry_failed, rows_per_part=args.rows_per_part, on_row=on_row,
                on_start=progress.start if progress else None, speakers=args.speakers,
            )
    except Emotion2vecError as e:
        if progress:
            progress.clear()
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    if progress:
        progress.clear()
    print(summary.line)
    if summary.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_FAILED if summary.failed else EXIT_OK
