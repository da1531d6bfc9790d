"""The training loop both trainers run. A trainer prepares its data and trainable weights, then
hands this loop its optimizer and one step function (draw a batch, compute the loss, call `backward`
on it); the loop does the rest the same way for both: optimizer state restored on resume, loss
scaling, the learning-rate schedule, the evaluation before and after, progress, validation and
Cancel, checkpoints, the finite-loss stop, and the checks that ComfyUI trained through the patched
model as this package expects (before the optimizer's first step, so a wrong host changes nothing).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .. import host
from .errors import require_finite_loss
from .memory import clear_out_of_memory
from .optimizer_state import OptimizerState, optimizer_state, restore_optimizer_state, state_path
from .precision import Precision
from .progress import TrainingProgress
from .seeds import global_rng_kept

Backward = Callable[[torch.Tensor], None]


@dataclass
class StepLoss:
    """One optimizer step's loss, and its named terms (StyleForge: StyleRef and Aux)."""

    loss: float
    terms: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class LossStop:
    """What the finite-loss stop tells the user: the input to change, what is kept, the fix."""

    input_name: str
    kept: str
    fix: str


@dataclass(frozen=True)
class Resume:
    """The weights a run continues and the file they came from (its optimizer state is beside it)."""

    tensors: dict[str, torch.Tensor]
    path: Path | None
    input_name: str


@dataclass
class Run:
    """What a trainer hands the loop. `step(n, backward)` makes step n's loss and calls `backward` on
    it (or on each part of it); `evaluate()` is the loss on the trainer's fixed evaluation set."""

    optimizer: torch.optim.Optimizer
    named: dict[str, torch.nn.Parameter]  # the trained parameters, named as in the optimizer state file
    step: Callable[[int, Backward], StepLoss]
    evaluate: Callable[[], float]
    steps: int  # the step the run ends at
    start_step: int  # the steps already done (a resumed run)
    precision: Precision
    progress: TrainingProgress
    patches: host.trainable.TrainingPatches
    loss_stop: LossStop
    lr_factor: Callable[[int], float] = lambda step: 1.0
    checkpoint: Callable[[int, OptimizerState], None] | None = None  # called every `checkpoint_every` steps
    checkpoint_every: int = 0
    checkpoint_name: str = ""  # how the user finds the checkpoint again (its entry in resume_from)
    resume: Resume | None = None


@dataclass
class Outcome:
    losses: list[StepLoss]
    eval_before: float
    eval_after: float
    seconds_per_step: float  # the steps alone: checkpoints and validation rounds are not counted
    optimizer: OptimizerState  # at the last step, to save beside the trained weights
    optimizer_restored: bool  # whether a resumed run continued AdamW's state


@contextlib.contextmanager
def training_session(model, clip, resolution: int, batch_size: int, checkpointing: bool, precision: Precision,
                     kept: str) -> Iterator[host.trainable.TrainingPatches]:
    """The frozen models made trainable for the block (host.trainable.training_context), and running
    out of memory in it turned into an error naming the settings to change; `kept` says what the user
    still has then."""
    with (clear_out_of_memory(resolution, batch_size, checkpointing, precision.name, kept),
          host.trainable.training_context(model, clip, checkpointing) as patches):
        yield patches


def train(run: Run) -> Outcome:
    scaler = run.precision.grad_scaler()
    resume = run.resume
    restored = resume is not None and resume.path is not None and restore_optimizer_state(
        run.optimizer, run.named, scaler, resume.tensors, state_path(resume.path), resume.input_name)
    base_lrs = [group["lr"] for group in run.optimizer.param_groups]

    def backward(loss: torch.Tensor) -> None:
        require_differentiable(loss)
        scaler.scale(loss).backward()

    run.progress.say("preparing: the loss before training, on the fixed evaluation set")
    eval_before = run.evaluate()
    run.patches.require_ran()
    losses: list[StepLoss] = []
    seconds, done, kept = 0.0, run.start_step, None  # kept: the step of the last checkpoint written
    try:
        run.progress.start(run.start_step)
        with global_rng_kept():
            for step in range(run.start_step + 1, run.steps + 1):
                t0 = time.perf_counter()
                for group, base_lr in zip(run.optimizer.param_groups, base_lrs):
                    group["lr"] = base_lr * run.lr_factor(step)
                losses.append(run.step(step, backward))
                require_finite_loss(losses[-1].loss, step, run.loss_stop.input_name, run.loss_stop.kept,
                                    run.loss_stop.fix)
                if step == run.start_step + 1:
                    require_gradients(run.optimizer, base_lrs)
                scaler.step(run.optimizer)
                scaler.update()
                run.optimizer.zero_grad(set_to_none=True)
                seconds += time.perf_counter() - t0
                done = step
                if run.checkpoint is not None and run.checkpoint_every and step % run.checkpoint_every == 0:
                    run.checkpoint(step, optimizer_state(run.optimizer, run.named, scaler))
                    kept = step
                run.progress.update(step, losses[-1].loss, losses[-1].terms)
    except host.progress.Cancelled:
        run.progress.say(cancelled_text(run, done, kept))
        raise
    run.progress.say("finishing: the loss after training, on the same evaluation set")
    eval_after = run.evaluate()
    return Outcome(losses, eval_before, eval_after, seconds / max(1, run.steps - run.start_step),
                   optimizer_state(run.optimizer, run.named, scaler), restored)


def cancelled_text(run: Run, done: int, kept: int | None) -> str:
    """What the node shows after Cancel: where the run stopped and what the user still has."""
    text = f"Cancelled after step {done} of {run.steps}. "
    if kept is None:
        return text + run.loss_stop.kept[0].upper() + run.loss_stop.kept[1:]
    return text + f"The checkpoint of step {kept} is kept: to go on from it, choose {run.checkpoint_name} in " \
                  "resume_from."


def require_differentiable(loss: torch.Tensor) -> None:
    """The loss was computed through autograd from the trained weights."""
    if not loss.requires_grad:
        raise host.version.HostMismatch("the training loss came out without a gradient: the model ran "
                                        "without autograd, so no trained weight would change.",
                                        "Train on a ComfyUI in the tested range.")


def require_gradients(optimizer: torch.optim.Optimizer, base_lrs: list[float]) -> None:
    """After the first backward: every parameter group that trains (learning rate above 0) got a
    gradient. One that got none means the patched model never ran its weights (e.g. a LoRA hook that
    ComfyUI's forward skips), and the run would end with them unchanged while reporting success."""
    for group, base_lr in zip(optimizer.param_groups, base_lrs):
        if base_lr > 0 and all(param.grad is None for param in group["params"]):
            raise host.version.HostMismatch(f"no gradient reached {len(group['params'])} of the trained weights "
                                            "after the first step: the model ran without them.",
                                            "Train on a ComfyUI in the tested range.")
