"""Retry timing. Pure: the random source is passed in."""

from __future__ import annotations

import random


def backoff_delay(
    attempt: int, *, base_s: float, jitter: float = 0.1, cap_s: float = 3600.0,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based): base * 2^(attempt-1),
    spread by up to ``jitter`` (a fraction) either way so retries of many jobs do not align."""
    if attempt < 1:
        raise ValueError(f"attempt is 1-based, got {attempt}")
    delay = min(cap_s, base_s * 2 ** (attempt - 1))
    spread = delay * jitter
    return max(0.0, delay + (rng or random).uniform(-spread, spread))
