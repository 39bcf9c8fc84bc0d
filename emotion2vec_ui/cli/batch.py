"""The `batch` command: `python -m emotion2vec_ui batch INPUT... --out results.parquet`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..batch.manifest import discover_inputs
from ..batch.ray_engine import run_batch_ray
from ..batch.run import DEFAULT_OUT, ROWS_PER_PART, run_batch
from ..batch.table import BatchTableError, table_format
from ..engine.backend import marked_random_weights
from ..engine.recognizer import load_model
from ..errors import Emotion2vecError
from ..results import GRANULARITIES
from ..settings import add_options
from .exit_codes import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from .notices import warn_if_random_weights
from .options import speakers_option
from .progress import FileProgress

ENGINES = ("local", "ray")


def add_batch_command(commands) -> None:
    """Add the `batch` subcommand to the CLI's subparsers (with the CLI's settings flags)."""

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
    progress = None if args.quiet or not sys.stderr.isatty() else FileProgress()
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
            # The model loads in Ray's actors: its folder says whether it has random weights.
            warn_if_random_weights(Path(settings.model).expanduser().name, marked_random_weights(settings.model))
            summary = run_batch_ray(
                items, args.out, args.granularity, args.embedding, model=settings.model,
                engine_options=settings.engine_options(), address=args.address, workers=args.workers,
                gpus_per_worker=args.gpus_per_worker, cpus_per_worker=args.cpus_per_worker,
                rows_per_part=args.rows_per_part, retry_failed=args.retry_failed,
                save_folders=save_folders, on_row=on_row, on_start=progress.start if progress else None,
                speakers=args.speakers,
            )
        else:

            recognizer = load_model(settings.model, **settings.engine_options())
            warn_if_random_weights(recognizer.model_name, recognizer.random_weights)
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
