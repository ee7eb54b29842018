"""Durations as written in definitions: ``30s``, ``5m``, ``1h``, ``1d``, ``7d``, ``2w``.

A :class:`Duration` is a whole, positive number of seconds that remembers the unit it was
written in, because its text is part of output column names (``views_60m`` and ``views_1h``
are different columns). Equality, hashing and ordering use the seconds only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

UNIT_SECONDS: dict[str, int] = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}

# Longer spans only overflow timestamp arithmetic; no window, block or label needs them.
MAX_SECONDS = 3650 * UNIT_SECONDS["d"]

_DURATION = re.compile(r"([0-9]+)([smhdw])")


@dataclass(frozen=True, order=True)
class Duration:
    """A positive whole number of seconds, shown in the unit it was written in.

    ``Duration(300)`` picks the largest unit that divides the seconds (``5m``);
    ``Duration(3600, "m")`` keeps minutes (``60m``).
    """

    seconds: int
    unit: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.seconds, bool) or not isinstance(self.seconds, int):
            raise TypeError(f"Duration seconds must be an int, not {type(self.seconds).__name__}")
        if not 0 < self.seconds <= MAX_SECONDS:
            raise ValueError(f"a duration must be between 1s and {MAX_SECONDS}s, not {self.seconds}s")
        if not self.unit:
            unit = next(u for u in "wdhms" if self.seconds % UNIT_SECONDS[u] == 0)
            object.__setattr__(self, "unit", unit)
        elif self.unit not in UNIT_SECONDS:
            raise ValueError(f"unknown duration unit {self.unit!r}: use one of s, m, h, d, w")
        elif self.seconds % UNIT_SECONDS[self.unit]:
            raise ValueError(f"{self.seconds}s is not a whole number of {self.unit}")

    def __str__(self) -> str:
        return f"{self.seconds // UNIT_SECONDS[self.unit]}{self.unit}"

    def is_multiple_of(self, other: Duration) -> bool:
        return self.seconds % other.seconds == 0


def parse_duration(text: str) -> Duration:
    """Parse ``<int><s|m|h|d|w>`` (e.g. ``5m``); raise ValueError saying what would be right."""
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not a duration: write a number and a unit s, m, h, d or w, e.g. 5m")
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text} is not a duration: write a number and a unit s, m, h, d or w, e.g. 5m")
    count, unit = int(match[1]), match[2]
    if count == 0:
        raise ValueError(f"{text} is not a duration: it must be longer than zero")
    seconds = count * UNIT_SECONDS[unit]
    if seconds > MAX_SECONDS:
        raise ValueError(f"{text} is too long: durations are at most {MAX_SECONDS // UNIT_SECONDS['d']}d")
    return Duration(seconds, unit)
