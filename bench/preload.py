"""Imported once by the benchmark's fork server, so each measured child starts with torch and funasr loaded.

Both sides import torch and funasr before they can load a model (the project through
`load_model`), so loading them once keeps a run short without favouring either side;
their import time is left out of the model-load figures. Libraries that only one side
loads on its first request (PyAV for decoding) are not preloaded. Nothing here touches
CUDA or starts threads, so forking afterwards is safe.
"""

import torch  # noqa: F401

from emotion2vec_ui.engine.torch_backend import contained_funasr

with contained_funasr():
    import funasr  # noqa: F401
    from funasr import AutoModel  # noqa: F401
