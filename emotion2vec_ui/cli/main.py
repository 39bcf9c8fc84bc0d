"""Command line: `python -m emotion2vec_ui predict FILE... [options]`.

Loads the model once, recognises every file (bad files are reported and skipped),
writes an output folder per file and prints one line (or JSON) per file. Exit code 0
when every file worked, 1 when any failed, 2 for usage errors or a model that cannot
load. `--help` imports neither torch nor funasr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from ..audio.formats import ACCEPTED_FORMATS
from ..engine.checkpoint import build_checkpoint
from ..engine.recognizer import load_model
from ..errors import Emotion2vecError
from ..interrupts import ctrl_c_held
from ..outputs.folders import check_free_space, save_recognition, sweep_staging
from ..results import GRANULARITIES, counted
from ..settings import Settings, add_options, configure_logging, resolve
from .batch import add_batch_command, run_batch_command
from .exit_codes import EXIT_BROKEN_PIPE, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from .notices import warn_if_random_weights
from .options import check_recognition_flags, speakers_option
from .progress import ProgressBar

SCRIPT = "emotion2vec-ui"  # the installed command (pyproject.toml), the same as python -m emotion2vec_ui


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=SCRIPT if os.path.basename(sys.argv[0]) == SCRIPT else "python -m emotion2vec_ui",
        description="Speech emotion recognition with emotion2vec+ large.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    predict = commands.add_parser("predict", help="recognise the emotion in audio files")
    predict.add_argument("files", nargs="+", metavar="FILE", help=f"audio files ({ACCEPTED_FORMATS})")
    predict.add_argument("--granularity", choices=GRANULARITIES, default="utterance",
                         help="one verdict per file (utterance), a 20 ms track (frame) or one per speech segment (segment)")
    predict.add_argument("--speakers", default=None, type=speakers_option, metavar="one|channels|auto|N",
                         help="segment mode: one speaker (the default), one speaker per channel, speakers found "
                              "automatically, or N speakers")
    predict.add_argument("--speaker-names", default=None, type=lambda text: text.split(","), metavar="A,B",
                         help="segment mode: names for the speakers, e.g. agent,customer")
    predict.add_argument("--embedding", action="store_true", help="also save embedding.npy")
    predict.add_argument("--no-save", action="store_true", help="print results without writing folders")
    predict.add_argument("--json", action="store_true", help="print one JSON object per file (errors too, on stdout)")
    predict.add_argument("--quiet", action="store_true", help="no progress bar")
    add_options(predict, "cli")

    add_batch_command(commands)

    build = commands.add_parser("build-checkpoint", help="write a random-weight checkpoint folder")
    build.add_argument("folder", help="folder to write config.yaml, tokens.txt, configuration.json, model.pt")
    build.add_argument("--size", choices=("tiny", "large"), default="tiny")
    build.add_argument("--seed", type=int, default=0)

    export = commands.add_parser("export-onnx", help="write the model as ONNX (encoder + head) for --backend onnx")
    export.add_argument("folder", help="folder to write encoder.onnx, head.onnx and emotion2vec_onnx.json")
    export.add_argument("--int8", action="store_true", help="quantise the encoder's matrix products to int8")
    add_options(export, "export")
    for command in commands.choices.values():
        command.set_defaults(command_parser=command)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        return _run(argv)
    except KeyboardInterrupt:  # Ctrl-C while the model loads or a file is written (saved folders are whole)
        print("\ninterrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader of stdout went away (`... --json | head -1`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit flush cannot fail again
        return EXIT_BROKEN_PIPE  # as a shell tool killed by the closed pipe


def _run(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "build-checkpoint":

        try:
            print(build_checkpoint(args.folder, size=args.size, seed=args.seed))
        except Emotion2vecError as e:
            print(f"error: {e}", file=sys.stderr)
            return EXIT_USAGE
        return EXIT_OK
    command_parser = args.command_parser  # its usage line comes with an error
    try:
        settings = resolve(args, "cli")
    except ValueError as e:
        command_parser.error(str(e))
    if args.command in ("predict", "batch"):
        check_recognition_flags(args)
    configure_logging(settings.log_level)
    if args.command == "export-onnx":
        return _export_onnx(args, settings)
    if args.command == "batch":
        return run_batch_command(args, settings)
    return _predict(args, settings)


def _export_onnx(args: argparse.Namespace, settings: Settings) -> int:
    from ..engine.onnx_export import export_onnx  # heavy: imports torch and funasr

    try:
        print(export_onnx(args.folder, settings.model, settings.hub, int8=args.int8))
    except Emotion2vecError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


def _predict(args: argparse.Namespace, settings: Settings) -> int:

    try:
        model = load_model(settings.model, **settings.engine_options())
    except Emotion2vecError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    warn_if_random_weights(model.model_name, model.random_weights)
    if not args.no_save:
        sweep_staging(settings.output_dir)
    progress = None if args.quiet or args.json or not sys.stderr.isatty() else ProgressBar()
    failed = finished = 0
    recognitions = model.iter_recognitions(args.files, args.granularity, args.embedding, progress=progress,
                                           speakers=args.speakers, speaker_names=args.speaker_names)
    try:
        for rec in recognitions:
            if progress:
                progress.clear()
            with ctrl_c_held():  # a saved folder is always counted
                folder = None if args.no_save else _save(rec, settings)
                finished += 1
            failed += _print_line(rec, folder, args.json)
    except KeyboardInterrupt:
        if progress:
            progress.clear()
        print(f"\ninterrupted after {finished} of {counted(len(args.files), 'file')} (each saved folder is complete)",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_FAILED if failed else EXIT_OK


def _save(rec, settings: Settings):
    """Save a good recognition into a new output folder and return that folder (None, with
    `rec.error` set, when it cannot be saved)."""

    if rec.error is not None:
        return None
    try:
        check_free_space(settings.output_dir, int(settings.min_free_disk_mb * 2**20))
        return save_recognition(rec.result, rec.audio, settings.output_dir)
    except Emotion2vecError as e:
        rec.error = e
        return None


def _print_line(rec, folder, as_json: bool) -> bool:
    """Print a recognition's line (stdout) or its error (stderr; stdout with --json); True if it failed."""
    if rec.error is not None:
        message = {"input": rec.name, "error": str(rec.error), "error_type": type(rec.error).__name__}
        print(json.dumps(message, ensure_ascii=False) if as_json else f"{rec.name}\tERROR\t{rec.error}",
              file=sys.stdout if as_json else sys.stderr, flush=True)
        return True
    if not as_json:  # in --json they are the result's "warnings"
        for warning in rec.result.warnings:
            print(f"{rec.name}\tWARNING\t{warning}", file=sys.stderr, flush=True)
    print(_format(rec, folder, as_json), flush=True)  # a line per file as it finishes, also into a pipe
    return False


def _format(rec, folder, as_json: bool) -> str:
    result = rec.result
    if as_json:
        data = result.to_dict()
        data["output_dir"] = str(folder) if folder else None
        return json.dumps(data, ensure_ascii=False)
    line = f"{rec.name}\t{result.emotion}\t{result.confidence:.3f}\t{result.display}\t{result.duration_s:.2f}s"
    if result.granularity == "frame":
        segments = result.frame_runs(min_duration_s=0.5)
        line += f"\t{counted(len(result.frame_scores), 'frame')}, {counted(len(segments), 'segment')}"
    if result.granularity == "segment":
        line += f"\t{counted(len(result.segments), 'segment')}" + (f"\t{result.note}" if result.note else "")
    line += f"\t{folder}" if folder else ""
    return "\n".join([line, *(f"{rec.name}\t{_segment_line(segment)}" for segment in result.segments)])


def _segment_line(segment) -> str:
    flags = " (short)" if segment.short else ""
    return (f"{segment.start_s:.2f}-{segment.end_s:.2f}s\t{segment.speaker}\t{segment.emotion}\t"
            f"{segment.confidence:.3f}\t{segment.display}{flags}")


if __name__ == "__main__":
    sys.exit(main())
