"""Run the real web app (`python app.py`) as a subprocess for the UI and browser tests.

One server serves the whole pytest run: the `ui_server` fixture starts it the first time it
is asked for and the fixture's teardown terminates it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STARTUP_TIMEOUT_S = 120.0
MAX_FILE_MB = 5  # the test server's upload limit
BATCH_MAX_FILES = 12  # the test server's batch limits: files ...
BATCH_MAX_MB = 12.0  # ... and MB per batch


@dataclass
class Server:
    """A running `python app.py`: its URL, output folder and logs."""

    process: subprocess.Popen
    url: str
    output_dir: Path
    stdout_path: Path
    stderr_path: Path

    def logs(self) -> str:
        return f"stdout:\n{self.stdout_path.read_text()}\nstderr:\n{self.stderr_path.read_text()}"

    def stop(self) -> None:
        """Terminate the server (SIGTERM, then SIGKILL after 10 s)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def app_env(checkpoint: Path | str, output_dir: Path, temp_dir: Path, **extra: str) -> dict:
    """The environment the app runs in: the tiny checkpoint on CPU, outputs in `output_dir`."""
    env = {
        **os.environ,
        "E2V_MODEL": str(checkpoint),
        "E2V_DEVICE": "cpu",
        "E2V_OUTPUT_DIR": str(output_dir),
        "GRADIO_TEMP_DIR": str(temp_dir),
        "GRADIO_ANALYTICS_ENABLED": "False",
        "PYTHONUNBUFFERED": "1",
    }
    env.update(extra)
    return env


def start_server(folder: Path, checkpoint: Path | str, *args: str, env: dict | None = None) -> Server:
    """Start `python app.py --port <free port> *args` and wait until it serves its page.

    Fails the test with the server's output when it exits or is not up within
    STARTUP_TIMEOUT_S seconds.
    """
    port = free_port()
    output_dir = folder / "outputs"
    stdout_path, stderr_path = folder / "server.out", folder / "server.err"
    with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
        process = subprocess.Popen(
            [sys.executable, "app.py", "--port", str(port), *args],
            cwd=REPO, env=app_env(checkpoint, output_dir, folder / "gradio", **(env or {})), stdout=out, stderr=err,
        )
    server = Server(process, f"http://127.0.0.1:{port}/", output_dir, stdout_path, stderr_path)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"app.py exited with code {process.returncode} while starting\n{server.logs()}")
        try:
            with urllib.request.urlopen(server.url + "config", timeout=5) as response:
                if response.status == 200:
                    return server
        except urllib.error.HTTPError as e:
            if e.code == 401:  # up, behind a login
                return server
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    server.stop()
    pytest.fail(f"app.py did not serve within {STARTUP_TIMEOUT_S:.0f} s\n{server.logs()}")


_shared: dict[str, Server] = {}


@pytest.fixture(scope="session")
def ui_server(tmp_path_factory, tiny_checkpoint) -> Server:
    """The app on the tiny checkpoint, shared by every test module that asks for it."""
    server = _shared.get("server")
    if server is None or server.process.poll() is not None:
        folder = tmp_path_factory.mktemp("ui_server")
        server = _shared["server"] = start_server(
            folder, tiny_checkpoint, "--max-file-mb", str(MAX_FILE_MB), "--batch-max-files", str(BATCH_MAX_FILES),
            "--batch-max-mb", str(BATCH_MAX_MB),
        )
    yield server
    server.stop()
