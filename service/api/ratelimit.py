"""Per-key request rate limits (the ``limits`` library's moving window), answered with 429 and ``Retry-After``.

A request with a key is counted against the key's name; an anonymous one against its client address. Counters
live in this process's memory: with several replicas, each enforces the limit on its own share of the traffic.
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from index.errors import QAError

__all__ = ["RateLimiter"]


class RateLimiter:
    """``check(identity)`` returns 0 when the request may go ahead, else the seconds to wait."""

    def __init__(self, keyed: str | None, anonymous: str | None) -> None:
        try:
            self.keyed: RateLimitItem | None = parse(keyed) if keyed else None
            self.anonymous: RateLimitItem | None = parse(anonymous) if anonymous else None
        except ValueError as exc:
            raise QAError(f"invalid rate limit ({exc}); write it like '120/minute' or '10/second'") from exc
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    def check(self, identity: str, anonymous: bool) -> int:
        item = self.anonymous if anonymous else self.keyed
        if item is None or self._limiter.hit(item, identity):
            return 0
        reset_at, _ = self._limiter.get_window_stats(item, identity)
        return max(1, math.ceil(reset_at - time.time()))

    def describe(self, anonymous: bool) -> str:
        item = self.anonymous if anonymous else self.keyed
        return str(item) if item is not None else "unlimited"
