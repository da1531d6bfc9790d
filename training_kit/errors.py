"""The one error type users see: which input is wrong, what was expected, how to fix it.

ComfyUI shows an exception's message in the UI; raising this (never a bare assert or a tensor shape
error from deep inside torch) keeps that message readable.
"""

import math


class InputError(ValueError):
    def __init__(self, input_name: str, problem: str, fix: str = ""):
        self.input_name = input_name
        message = f"Input '{input_name}': {problem}"
        super().__init__(f"{message} {fix}".strip() if fix else message)


def require_finite_loss(loss: float, step: int, input_name: str, kept: str, fix: str) -> None:
    """Stop training at a NaN or infinite loss: every step after it would only spread it into the
    weights. `kept` says what the user still has, `fix` what to change (both trainers raise this)."""
    if not math.isfinite(loss):
        raise InputError(input_name, f"the training loss became {loss} at step {step}; {kept}", fix)
