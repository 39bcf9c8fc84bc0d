"""Find a hub model offline, and fail fast when it must be downloaded but the hub is unreachable.

Without this, a machine without internet waits about 35 s while the hub client retries,
then ends with a nested connection error. `cached_model_folder` asks the hub client
itself (ModelScope's or Hugging Face's `snapshot_download(local_files_only=True)`) for
a model already downloaded, so a cached model loads with no network at all;
`require_hub` tries one TCP connection to the hub's host (name lookup included)
within HUB_TIMEOUT_S and raises HubUnreachableError with what to do instead.
"""

from __future__ import annotations

import shlex
import socket
import sys
import threading
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import HubUnreachableError

HUB_TIMEOUT_S = 3.0  # name lookup plus TCP connect to the hub's host
HUBS = {"ms": "ModelScope", "hf": "Hugging Face"}
HUB_MODEL_IDS = {"ms": "iic/emotion2vec_plus_large", "hf": "emotion2vec/emotion2vec_plus_large"}
DEFAULT_MODEL = HUB_MODEL_IDS["ms"]  # the same model on either hub
DEFAULT_ENDPOINTS = {"ms": "https://modelscope.cn", "hf": "https://huggingface.co"}


def hub_endpoint(hub: str) -> str:
    """The URL the hub client downloads from (its own setting, e.g. HF_ENDPOINT, included)."""
    try:
        if hub == "hf":
            from huggingface_hub import constants  # heavy: a hub client loads on first use

            return constants.ENDPOINT
        from modelscope.hub.api import HubApi  # heavy: a hub client loads on first use

        return HubApi().endpoint
    except Exception:  # an older client without these settings: its public default
        return DEFAULT_ENDPOINTS[hub]


def hub_reachable(url: str, timeout_s: float = HUB_TIMEOUT_S) -> bool:
    """Whether a TCP connection to `url`'s host and port opens within `timeout_s` seconds.

    The name lookup runs in a daemon thread, since getaddrinfo takes no timeout and a
    resolver that is cut off can block for longer than the whole check may take.
    """
    parts = urlsplit(url if "//" in url else f"https://{url}")
    host, port = parts.hostname or "", parts.port or (80 if parts.scheme == "http" else 443)
    outcome: list[bool] = []

    def connect() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout_s):
                outcome.append(True)
        except OSError:
            outcome.append(False)

    worker = threading.Thread(target=connect, name="hub-check", daemon=True)
    worker.start()
    worker.join(timeout_s)
    return bool(outcome and outcome[0])


def cached_model_folder(model: str, hub: str) -> Path | None:
    """The folder of `model` already in the hub client's cache, or None (no network used)."""
    try:
        if hub == "hf":
            from huggingface_hub import snapshot_download  # heavy: as above

            folder = snapshot_download(model, local_files_only=True)
        else:
            from modelscope.hub.snapshot_download import snapshot_download  # heavy: as above

            folder = snapshot_download(model, revision="master", local_files_only=True)
    except Exception:  # each client raises its own "not cached" error
        return None
    return Path(folder) if folder and Path(folder).is_dir() else None


def require_hub(model: str, hub: str, cache_dir: Path, endpoint: str | None = None,
                timeout_s: float = HUB_TIMEOUT_S) -> None:
    """Raise HubUnreachableError unless the hub (`endpoint`, default the client's own) answers."""
    url = endpoint or hub_endpoint(hub)
    if _client_offline(hub) or not hub_reachable(url, timeout_s):
        raise HubUnreachableError(offline_message(model, hub, url, cache_dir))


def _client_offline(hub: str) -> bool:
    """Whether the hub client was told to stay offline (HF_HUB_OFFLINE=1)."""
    if hub != "hf":
        return False
    from huggingface_hub import constants  # heavy: a hub client loads on first use

    return bool(constants.HF_HUB_OFFLINE)


def offline_message(model: str, hub: str, url: str, cache_dir: Path) -> str:
    """What to do when `model` is not cached and `hub` cannot be reached."""
    other = "ms" if hub == "hf" else "hf"
    return (
        f"cannot reach {HUBS[hub]} ({urlsplit(url).hostname or url}) to download {model}, and it is not in "
        f"the cache folder {cache_dir}. Without internet:\n"
        f"  - the other hub, if it is reachable: E2V_HUB={other} E2V_MODEL={HUB_MODEL_IDS[other]} "
        f"(or --hub {other} --model {HUB_MODEL_IDS[other]});\n"
        "  - a model folder copied from a machine with internet (config.yaml, tokens.txt, configuration.json, "
        "model.pt): E2V_MODEL=/path/to/emotion2vec_plus_large (or --model /path/...);\n"
        f"  - to try every feature without the model: {cli_command('build-checkpoint DIR --size tiny')}, "
        "then E2V_MODEL=DIR. That checkpoint has random weights: its emotions are meaningless."
    )


def cli_command(arguments: str) -> str:
    """This package's command line with `arguments`, as it runs from here: the Python running
    now (the project's virtual environment, say: `.venv/bin/python -m emotion2vec_ui ...`),
    so the line works without an activated environment. Its path is shown relative to the
    working folder when it lies inside it."""
    python = Path(sys.executable or "python")
    try:
        shown = str(python.relative_to(Path.cwd())) if python.is_absolute() else str(python)
    except ValueError:
        shown = str(python)
    if "/" not in shown and python.is_absolute():  # a bare name would be looked up on PATH
        shown = str(python)
    return f"{shlex.quote(shown)} -m emotion2vec_ui {arguments}"
