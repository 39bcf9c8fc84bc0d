"""The model: load_model + Recognizer, backends (torch, ONNX), encoder, kernels, checkpoints, hub access."""
