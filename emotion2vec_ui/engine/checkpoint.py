"""Build random-weight checkpoint folders in the published emotion2vec+ format.

A folder holds `config.yaml`, `tokens.txt`, `configuration.json` and `model.pt` (a
`torch.save`d state dict without the pre-training decoder, as released), and loads
through `load_model` exactly like a downloaded checkpoint. Its configuration.json is
marked `"random_weights": true` (funasr reads only its `file_path_metas`), so the loaded
recognizer (`Recognizer.random_weights`), its results, the page and the CLI say that its
emotions are meaningless; `export-onnx` keeps the mark in its manifest. Sizes:

- "large": the published plus_large config verbatim (164 M parameters, ~650 MB):
  the real architecture, for speed and memory measurements.
- "tiny": the same config with shrunk sizes (~0.1 M parameters, well under 1 MB), for tests.

Like `model.py`, this module imports torch and funasr; nothing at run time needs it.
"""

from __future__ import annotations

import json
import shutil
from importlib import resources
from pathlib import Path

import yaml

from ..errors import OutputWriteError
from ..outputs.folders import check_new_or_empty
from .backend import RANDOM_WEIGHTS_KEY, RANDOM_WEIGHTS_NOTE_KEY

SIZES = ("tiny", "large")
TEMPLATE = resources.files("emotion2vec_ui.engine") / "checkpoint_files"
TINY_OVERRIDES = {
    "embed_dim": 64,
    "num_heads": 4,
    "depth": 1,
}
TINY_AUDIO_OVERRIDES = {
    "feature_encoder_spec": "[(32, 10, 5)] + [(32, 3, 2)] * 4 + [(32,2,2)] + [(32,2,2)]",
    "num_alibi_heads": 4,
    "prenet_depth": 1,
    "model_depth": 1,
}
TINY_DECODER_OVERRIDES = {"decoder_dim": 32, "decoder_layers": 1, "decoder_groups": 4}
DECODER_PREFIX = "modality_encoders.AUDIO.decoder."
RANDOM_WEIGHTS_NOTE = ("written by emotion2vec-ui build-checkpoint with random weights, for tests and trials: "
                       "its emotions are meaningless")


def template_tokens() -> list[str]:
    """The published label list: `生气/angry` ... `<unk>` (9 entries)."""
    return (TEMPLATE / "tokens.txt").read_text(encoding="utf-8").split()


def build_checkpoint(
    folder: str | Path,
    size: str = "tiny",
    seed: int = 0,
    tokens: list[str] | None = None,
    head_gain: float = 1.0,
) -> Path:
    """Write a random-weight checkpoint folder; returns its path.

    `folder` must not exist yet or be empty: OutputWriteError otherwise, so that a real
    checkpoint (or anything else) is never overwritten by random weights.

    `tokens` replaces the label list (e.g. an older revision with `unuse_*` entries);
    `head_gain` scales the classification head's random weights, so tests can make the
    tiny model's predictions depend strongly on the input.
    """
    import torch  # heavy: only building a checkpoint needs torch here

    from .torch_backend import contained_funasr  # heavy: imports torch and funasr

    with contained_funasr():
        from funasr.models.emotion2vec.model import Emotion2vec  # heavy: funasr

    if size not in SIZES:
        raise ValueError(f"unknown checkpoint size {size!r}; use one of {', '.join(SIZES)}")
    folder = Path(folder)
    check_new_or_empty(folder, "the random-weight checkpoint", "a downloaded model")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputWriteError(f"cannot create {folder}: {e.strerror or e}.") from e
    config_text = (TEMPLATE / "config.yaml").read_text(encoding="utf-8")
    config = yaml.safe_load(config_text)
    if size == "tiny":
        _shrink(config)
        config_text = yaml.safe_dump(config, allow_unicode=True, sort_keys=False)
    (folder / "config.yaml").write_text(config_text, encoding="utf-8")
    if tokens:
        (folder / "tokens.txt").write_text("\n".join(tokens) + "\n", encoding="utf-8")
    else:
        shutil.copyfile(TEMPLATE / "tokens.txt", folder / "tokens.txt")
        tokens = template_tokens()
    configuration = json.loads((TEMPLATE / "configuration.json").read_text(encoding="utf-8"))
    configuration[RANDOM_WEIGHTS_KEY] = True
    configuration[RANDOM_WEIGHTS_NOTE_KEY] = RANDOM_WEIGHTS_NOTE
    (folder / "configuration.json").write_text(json.dumps(configuration, indent=2, ensure_ascii=False) + "\n",
                                               encoding="utf-8")

    torch.manual_seed(seed)
    net = Emotion2vec(model_conf=config["model_conf"], vocab_size=len(tokens))
    with torch.no_grad():
        net.proj.weight.mul_(head_gain)
    state = {k: v for k, v in net.state_dict().items() if not k.startswith(DECODER_PREFIX)}
    torch.save(state, folder / "model.pt")
    return folder


def _shrink(config: dict) -> None:
    conf = config["model_conf"]
    conf.update(TINY_OVERRIDES)
    audio = conf["modalities"]["audio"]
    audio.update(TINY_AUDIO_OVERRIDES)
    audio["decoder"].update(TINY_DECODER_OVERRIDES)
