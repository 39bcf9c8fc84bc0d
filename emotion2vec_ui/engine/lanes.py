"""CPU lanes: independent batches run side by side, each on its own share of the cores.

One batch on every core leaves cores waiting: in the parts of a forward pass that run
on one thread (int8's quantisation of each layer's input, small operators, Python) and
at every operator's join. Two batches, each on half the cores, keep them busy (on a
2-core CPU: the benchmark's clips 17 % faster with int8; docs/performance.md).

Torch's thread count is per thread (OpenMP, MKL), so each lane is a thread of a small
pool whose torch thread count is set once when the pool starts; the caller's own thread
count is untouched. A single batch runs in the caller's thread, on every core.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

import torch

Result = TypeVar("Result")


class CpuLanes:
    """`count` lanes of `threads_each` torch threads each; `submit` starts work in a free one."""

    def __init__(self, count: int, threads_each: int):
        if count < 2 or threads_each < 1:
            raise ValueError(f"lanes need count >= 2 and threads_each >= 1 (got {count}, {threads_each})")
        self.count = count
        self.threads_each = threads_each
        caller_threads = torch.get_num_threads()
        self._pool = ThreadPoolExecutor(count, thread_name_prefix="e2v-lane", initializer=self._start_lane)
        started = threading.Barrier(count + 1)
        for _ in range(count):  # each waits for the others, so the pool starts every lane now
            self._pool.submit(started.wait)
        started.wait()
        # A thread's first torch call copies the last count set anywhere: set it back to the
        # caller's, so threads started later (a server's request threads) get every core.
        torch.set_num_threads(caller_threads)

    def _start_lane(self) -> None:
        torch.get_num_threads()  # torch's own per-thread set-up first, or it would undo the next line
        torch.set_num_threads(self.threads_each)

    def submit(self, work: Callable[..., Result], *args) -> Future:
        """Run `work(*args)` in the next free lane (first come, first served)."""
        return self._pool.submit(work, *args)

    def threads_per_lane(self) -> list[int]:
        """Torch's thread count as each lane sees it (for the tests)."""
        started = threading.Barrier(self.count)

        def count_threads() -> int:
            started.wait()  # one call per lane: none may take two
            return torch.get_num_threads()

        return list(self._pool.map(lambda _: count_threads(), range(self.count)))

    def close(self) -> None:
        self._pool.shutdown(wait=False)
