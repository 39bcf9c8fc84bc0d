"""Lines the commands print once per run on stderr, beside their results."""

from __future__ import annotations

import sys

from ..results import RANDOM_WEIGHTS_WARNING


def random_weights_line(model_name: str) -> str:
    """The warning printed once per run when the model was built with random weights."""
    return f"warning: model {model_name}: {RANDOM_WEIGHTS_WARNING}"


def warn_if_random_weights(model_name: str, random_weights: bool) -> None:
    """Say once, on stderr, that the model's emotions are meaningless when its checkpoint was
    built with random weights (build-checkpoint, or an ONNX export of one)."""
    if random_weights:
        print(random_weights_line(model_name), file=sys.stderr, flush=True)
