"""The allowed values of a training run's numeric settings, declared once: the node schemas take their
bounds from here (so the widgets clamp to them) and the trainers check a config against them (so a
batch manifest row, which no widget clamps, is refused exactly as the node would refuse it)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from .errors import InputError


@dataclass(frozen=True)
class Range:
    low: float
    high: float
    multiple_of: int = 1  # integers only: e.g. 8 for a resolution

    def widget(self) -> dict:
        """The bounds as a schema's Int or Float input takes them."""
        bounds = {"min": self.low, "max": self.high}
        return {**bounds, "step": self.multiple_of} if self.multiple_of > 1 else bounds

    def check(self, input_name: str, value: float) -> None:
        allowed = f"Use a value from {_shown(self.low)} to {_shown(self.high)}" + (
            f" that is a multiple of {self.multiple_of}." if self.multiple_of > 1 else ".")
        if not math.isfinite(value):
            raise InputError(input_name, f"is {value}, not a number.", allowed)
        if not self.low <= value <= self.high:
            raise InputError(input_name, f"{_shown(value)} is out of range.", allowed)
        if self.multiple_of > 1 and value % self.multiple_of:
            raise InputError(input_name, f"{_shown(value)} is not a multiple of {self.multiple_of}.", allowed)


def _shown(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


SEED = Range(0, 2**63 - 1)
RESOLUTION = Range(64, 2048, multiple_of=8)
BATCH_SIZE = Range(1, 64)


def check_ranges(config: object, ranges: dict[str, Range]) -> None:
    """Every setting of `config` (a dataclass) that has a range lies in it."""
    values = dataclasses.asdict(config)
    for name, allowed in ranges.items():
        allowed.check(name, values[name])
