"""Serve the emotion2vec+ web page and REST API: `python app.py [options]` (or `bash run.sh`).

Every option falls back to an environment variable, then to a default:

    --host         E2V_HOST         127.0.0.1
    --port         E2V_PORT         7860
    --auth         E2V_AUTH         none (user:password turns on a login page)
    --model        E2V_MODEL        iic/emotion2vec_plus_large (hub id or local checkpoint folder)
    --hub          E2V_HUB          ms (ModelScope) or hf (Hugging Face)
    --device       E2V_DEVICE       cuda when present, else cpu
    --precision    E2V_PRECISION    fp32 (or bf16, fp16)
    --output-dir   E2V_OUTPUT_DIR   outputs
    --queue-size   E2V_QUEUE_SIZE   16
    --max-file-mb  E2V_MAX_FILE_MB  1024 (uploads; the engine refuses larger files too)

The model loads and warms up when this module is imported, so `demo` exists at module
level for Gradio's reload mode (`gradio app.py`); a model that cannot load ends the
program with the engine's message and exit code 2.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # a local app: no usage reports

from emotion2vec_ui import Emotion2vecError, load_model  # noqa: E402
from emotion2vec_ui.ui import DEFAULT_MAX_FILE_MB, DEFAULT_QUEUE_SIZE, build_demo, launch  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    env = os.environ.get
    parser = argparse.ArgumentParser(
        prog="python app.py", description="emotion2vec+ speech emotion recognition: web page and REST API."
    )
    parser.add_argument("--host", default=env("E2V_HOST", "127.0.0.1"),
                        help="address to bind (env E2V_HOST; default 127.0.0.1, 0.0.0.0 for all interfaces)")
    parser.add_argument("--port", type=int, default=env("E2V_PORT", "7860"), help="port (env E2V_PORT; default 7860)")
    parser.add_argument("--auth", default=env("E2V_AUTH"), metavar="USER:PASSWORD",
                        help="require this login (env E2V_AUTH)")
    parser.add_argument("--model", default=None,
                        help="hub id or local checkpoint folder (env E2V_MODEL; default iic/emotion2vec_plus_large)")
    parser.add_argument("--hub", choices=("ms", "hf"), default=None, help="ModelScope or Hugging Face (env E2V_HUB)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (env E2V_DEVICE; default: CUDA if present)")
    parser.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default=env("E2V_PRECISION", "fp32"),
                        help="weights and activations dtype (env E2V_PRECISION; default fp32)")
    parser.add_argument("--output-dir", default=env("E2V_OUTPUT_DIR", "outputs"), metavar="DIR",
                        help="where the outputs_YYYYMMDD_HHMMSS folders go (env E2V_OUTPUT_DIR; default outputs)")
    parser.add_argument("--queue-size", type=int, default=env("E2V_QUEUE_SIZE", str(DEFAULT_QUEUE_SIZE)),
                        help=f"requests that may wait for the model (env E2V_QUEUE_SIZE; default {DEFAULT_QUEUE_SIZE})")
    parser.add_argument("--max-file-mb", type=float, default=env("E2V_MAX_FILE_MB", str(DEFAULT_MAX_FILE_MB)),
                        help=f"upload size limit in MB (env E2V_MAX_FILE_MB; default {DEFAULT_MAX_FILE_MB:g})")
    return parser


def parse_auth(text: str | None) -> tuple[str, str] | None:
    """"user:password" -> ("user", "password"); None or "" -> None."""
    if not text:
        return None
    user, sep, password = text.partition(":")
    if not sep or not user or not password:
        raise ValueError("--auth / E2V_AUTH must look like user:password")
    return user, password


def parse_args(argv: list[str] | None = None, strict: bool = True) -> argparse.Namespace:
    """Options from `argv` (default sys.argv) and the environment. When not `strict`
    (this file imported by another program) unknown arguments are ignored."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if strict and unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        args.auth = parse_auth(args.auth)
    except ValueError as e:
        parser.error(str(e))
    if not 0 < args.port < 65536 or args.queue_size < 1 or args.max_file_mb <= 0:
        parser.error("--port must be 1-65535, --queue-size at least 1 and --max-file-mb positive")
    return args


def load_or_exit(args: argparse.Namespace):
    """Load and warm up the model (one short dummy recognition, so the first request is
    as fast as later ones), or exit with the engine's message and exit code 2."""
    started = time.perf_counter()
    try:
        model = load_model(args.model, args.hub, args.device, precision=args.precision, warm_up=True)
    except Emotion2vecError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    print(f"Model {model.model_name} on {model.device}: loaded and warmed up in "
          f"{time.perf_counter() - started:.1f} s", flush=True)
    return model


args = parse_args(strict=__name__ == "__main__")
model = load_or_exit(args)
demo = build_demo(model, output_root=args.output_dir, queue_size=args.queue_size)

if __name__ == "__main__":
    launch(demo, host=args.host, port=args.port, auth=args.auth, max_file_mb=args.max_file_mb,
           output_root=args.output_dir)
