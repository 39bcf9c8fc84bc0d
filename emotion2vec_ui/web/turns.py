"""Turns on the one model of a server, first come, first served.

The page's single recognitions, its batches and the REST API share one loaded model.
A batch does not hold the model for its whole run: it takes one turn per group of files
(what the model computes at once, see ui_batch.py), and a turn asked for while another
runs waits behind every turn asked for before it. So a single recognition that arrives
in the middle of a batch waits at most for the group in progress (and those already
waiting), then the batch goes on; a batch cannot starve anyone, and nobody can starve a batch.

    shared = TakingTurns(model)         # hand `shared` to every handler instead of `model`
    shared.recognize([audio], ...)      # waits for its turn, then runs
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class ModelTurns:
    """A first-in, first-out lock: `with turns.turn(): ...` runs when every earlier turn is over."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._next_ticket = 0  # handed to the next caller
        self._serving = 0  # the ticket whose turn it is

    @contextmanager
    def turn(self) -> Iterator[None]:
        with self._changed:
            ticket = self._next_ticket
            self._next_ticket += 1
            self._changed.wait_for(lambda: self._serving == ticket)
        try:
            yield
        finally:
            with self._changed:
                self._serving += 1
                self._changed.notify_all()

    @property
    def waiting(self) -> int:
        """Turns asked for and not yet begun (the running one excluded)."""
        with self._changed:
            return max(0, self._next_ticket - self._serving - 1)


class TakingTurns:
    """A Recognizer whose `recognize` (the model's work) runs in FIFO turns; every other
    attribute (decode, labels, model_name, device, ...) is the recognizer's own."""

    def __init__(self, recognizer, turns: ModelTurns | None = None):
        self.recognizer = recognizer
        self.turns = turns or ModelTurns()

    def recognize(self, *args, **kwargs):
        with self.turns.turn():
            return self.recognizer.recognize(*args, **kwargs)

    def __getattr__(self, name: str):
        return getattr(self.recognizer, name)
