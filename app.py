"""Serve the emotion2vec+ web page and REST API: `python app.py [options]` (or `bash run.sh`).

Every option falls back to an environment variable, then to a default; the list is in
emotion2vec_ui/settings.py and docs/server.md (`python app.py --help` prints it).

The model loads and warms up when this module is imported, so `demo` exists at module
level for Gradio's reload mode (`gradio app.py`); a model that cannot load ends the
program with the engine's message and exit code 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
import time

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # a local app: no usage reports

from emotion2vec_ui import Emotion2vecError, load_model  # noqa: E402
from emotion2vec_ui.outputs.folders import sweep_staging  # noqa: E402
from emotion2vec_ui.settings import Settings, add_options, configure_logging, parse_settings  # noqa: E402
from emotion2vec_ui.web.page import build_demo, launch  # noqa: E402

log = logging.getLogger("emotion2vec_ui.app")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python app.py", description="emotion2vec+ speech emotion recognition: web page and REST API."
    )
    add_options(parser, "server")
    return parser


def load_or_exit(settings: Settings):
    """Load and warm up the model (one short dummy recognition, so the first request is
    as fast as later ones), or exit with the engine's message and exit code 2."""
    started = time.perf_counter()
    try:
        model = load_model(settings.model, **settings.engine_options(), warm_up=True)
    except Emotion2vecError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    log.info("model %s on %s (%s, %s): loaded and warmed up in %.1f s", model.model_name, model.device,
             "ONNX Runtime" if settings.backend == "onnx" else "torch", model.backend.precision,
             time.perf_counter() - started)
    if model.random_weights:
        log.warning("model %s has random weights (built by build-checkpoint, for tests and trials): its emotions "
                    "are meaningless; the page says so in its header, and every result in random_weights and "
                    "model_warning.", model.model_name)
    return model


def exit_if_port_taken(settings: Settings) -> None:
    """Exit with code 2 and one line when the address cannot be bound, before the (slow) model load."""
    try:
        family = socket.getaddrinfo(settings.host, settings.port, type=socket.SOCK_STREAM)[0][0]
        with socket.create_server((settings.host, settings.port), family=family):
            pass
    except OSError as e:
        print(f"error: cannot serve on {settings.host}:{settings.port}: {e.strerror or e}. If another program (another "
              "copy of this app?) holds the port, choose another with --port N or E2V_PORT=N; the address is set "
              "by --host or E2V_HOST.", file=sys.stderr)
        sys.exit(2)


def warn_if_open(settings: Settings) -> None:
    if settings.binds_beyond_loopback and not settings.auth:
        log.warning(
            "serving on %s with no login: anyone who can reach this machine can use the app. "
            "Set E2V_AUTH=user:password or --auth-file FILE.", settings.host,
        )


_, settings = parse_settings(build_parser(), "server", strict=__name__ == "__main__")
configure_logging(settings.log_level)
if __name__ == "__main__":
    exit_if_port_taken(settings)
sweep_staging(settings.output_dir)
model = load_or_exit(settings)
demo = build_demo(model, settings)

if __name__ == "__main__":
    warn_if_open(settings)
    launch(demo, settings)
