"""The command line's one progress bar: a line on stderr, redrawn in place, for a terminal.

    bar = ProgressBar()             # predict: the engine's progress callback
    bar(0.4, "window 2/5")          # [############------------------]  40.0% window 2/5 (3 s)
    files = FileProgress()          # batch: one call per finished row
    files.start(120); files(row)    # [##----] 3/120 files  1.20 files/s  9.5 audio-s/s  ETA 0:01:37
"""

from __future__ import annotations

import sys
import time


class ProgressBar:
    """`bar(fraction, text)` draws `[####----] text`; `clear()` wipes the line before other output."""

    def __init__(self, width: int = 30, stream=None):
        self.width = width
        self.stream = stream or sys.stderr
        self.started = time.monotonic()

    def draw(self, fraction: float, text: str) -> None:
        filled = int(self.width * min(max(fraction, 0.0), 1.0))
        bar = "#" * filled + "-" * (self.width - filled)
        print(f"\r[{bar}] {text}", end="", file=self.stream, flush=True)

    def __call__(self, fraction: float, text: str) -> None:
        """The engine's progress callback: percent, the step's text and the seconds so far."""
        elapsed = time.monotonic() - self.started
        self.draw(fraction, f"{fraction * 100:5.1f}% {text} ({elapsed:.0f} s)")

    def clear(self) -> None:
        print("\r" + " " * (self.width + 80) + "\r", end="", file=self.stream, flush=True)


class FileProgress(ProgressBar):
    """Files done of `total`, files/s, audio seconds per second and the ETA; called with each finished row."""

    def __init__(self, width: int = 24, stream=None):
        super().__init__(width, stream)
        self.start(0)

    def start(self, total: int) -> None:
        """Begin counting `total` files from now."""
        self.total = max(total, 1)
        self.started = time.monotonic()
        self.files = 0
        self.audio_s = 0.0

    def __call__(self, row: dict) -> None:
        self.files += 1
        self.audio_s += row.get("duration_s") or 0.0
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = self.files / elapsed
        eta = (self.total - self.files) / rate if rate > 0 else 0.0
        self.draw(self.files / self.total, f"{self.files}/{self.total} files  {rate:.2f} files/s  "
                                           f"{self.audio_s / elapsed:.1f} audio-s/s  ETA {_clock(eta)} ")


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
