"""Ctrl-C (SIGINT) handled the same way by every long run: noted, or held over a write.

`ctrl_c_noted` lets a loop stop at its next item even when Python lost the
KeyboardInterrupt; `ctrl_c_held` delays it until a block (a folder being saved) is done.
Both act only in the main thread while Python's own handler is installed.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


def python_handles_ctrl_c() -> bool:
    """True in the main thread while Python's own Ctrl-C handler is installed (not in a
    background job, where SIGINT is ignored, nor under another handler)."""
    return threading.current_thread() is threading.main_thread() and \
        signal.getsignal(signal.SIGINT) is signal.default_int_handler


@contextmanager
def ctrl_c_noted() -> Iterator[threading.Event]:
    """An Event that Ctrl-C (SIGINT) sets besides raising KeyboardInterrupt as usual, so a
    run still stops at its next row when the exception is lost (Python only prints one
    raised inside a finaliser). Only where Python's own Ctrl-C handler is installed and
    only in the main thread; elsewhere the Event is never set."""
    noted = threading.Event()
    if not python_handles_ctrl_c():
        yield noted
        return

    def note_and_interrupt(signum, frame):
        noted.set()
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, note_and_interrupt)
    try:
        yield noted
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@contextmanager
def ctrl_c_held() -> Iterator[None]:
    """Ctrl-C (SIGINT) during the block raises KeyboardInterrupt when the block ends, not
    within it, so what the block writes is whole; only where Python's own Ctrl-C handler is
    installed, in the main thread."""
    if not python_handles_ctrl_c():
        yield
        return
    caught = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught:
            raise KeyboardInterrupt
