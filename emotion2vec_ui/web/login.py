"""The server's login check, with a growing wait after wrong passwords."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

LOGIN_DELAY_S = 1.0  # extra wait per recent failed login ...
LOGIN_MAX_DELAY_S = 10.0  # ... up to this
LOGIN_MEMORY_S = 600.0  # failures older than this are forgotten


class LoginGuard:
    """The server's login check: a wrong password costs a growing wait (LOGIN_DELAY_S per
    failure in the last LOGIN_MEMORY_S, at most LOGIN_MAX_DELAY_S), slowing a guesser down."""

    def __init__(self, user: str, password: str, clock: Callable[[], float] = time.monotonic):
        self.user, self.password, self.clock = user, password, clock
        self.failures: list[float] = []

    def delay_s(self) -> float:
        """The wait the next failed login costs."""
        now = self.clock()
        self.failures = [t for t in self.failures if now - t < LOGIN_MEMORY_S]
        return min(LOGIN_DELAY_S * (len(self.failures) + 1), LOGIN_MAX_DELAY_S)

    async def check(self, user: str, password: str) -> bool:
        """Gradio's `auth` callable (a coroutine function, so the wait blocks nobody else)."""
        if secrets.compare_digest(user.encode(), self.user.encode()) and secrets.compare_digest(
            password.encode(), self.password.encode()
        ):
            return True
        delay = self.delay_s()
        self.failures.append(self.clock())
        log.warning("failed login for user %r; answering in %.0f s", user, delay)
        await asyncio.sleep(delay)
        return False
