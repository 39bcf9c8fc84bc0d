"""The command line: predict, batch, build-checkpoint, export-onnx; progress bar, exit codes."""

from .main import main

__all__ = ["main"]
