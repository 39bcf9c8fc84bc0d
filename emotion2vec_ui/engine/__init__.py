"""The model: load_model + Recognizer, backends (torch, ONNX), encoder, kernels, checkpoints, hub access."""

from .recognizer import Recognition, Recognizer, load_model

__all__ = ["Recognition", "Recognizer", "load_model"]
