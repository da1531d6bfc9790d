"""What a training run returns, for both trainers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

from .validation import Validator

Trained = TypeVar("Trained")


@dataclass
class TrainingResult(Generic[Trained]):
    trained: Trained  # the InST style, or the StyleForge LoRA
    losses: list[float]  # training loss of each step this run made
    eval_before: float  # loss on the fixed evaluation set (training_kit.evaluation) before the first step
    eval_after: float  # ... and after the last
    terms: dict[str, list[float]] = field(default_factory=dict)  # named parts of each step's loss
    start_step: int = 0  # steps already done by the run this one resumed
    notes: list[str] = field(default_factory=list)  # for the log: data summaries, speed, choices made
    validation: Validator | None = None  # its rounds: images, files, scores
