"""One training loop for the whole course, returning a History.

The loop is the five lines every PyTorch program has (forward, loss,
zero_grad, backward, step), plus what the course needs to watch them: the
gradient norm before any clipping, the learning rate actually used, optional
clipping by global norm, an optional per-step scheduler, callbacks that see
the gradients between backward and step, and a tqdm progress bar.
A non-finite loss stops the run and is recorded, so divergence is visible in
the History instead of silently filling it with NaN.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from .data import batches

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class History:
    """What happened during training. Per-step lists share an index; per-epoch lists too."""

    step_loss: list[float] = field(default_factory=list)  # mini-batch loss at each step
    step_grad_norm: list[float] = field(default_factory=list)  # global L2 norm of all grads, before clipping
    step_lr: list[float] = field(default_factory=list)  # learning rate used by each step (first param group)
    epoch_train_loss: list[float] = field(default_factory=list)  # mean mini-batch loss over the epoch
    epoch_val_loss: list[float] = field(default_factory=list)  # empty when no validation data
    epoch_val_acc: list[float] = field(default_factory=list)  # empty when no validation data
    stopped_at_step: int | None = None  # first step whose loss was not finite, else None

    @property
    def steps(self) -> int:
        return len(self.step_loss)

    @property
    def diverged(self) -> bool:
        return self.stopped_at_step is not None

    def __repr__(self) -> str:
        last = f"{self.step_loss[-1]:.4g}" if self.step_loss else "n/a"
        acc = f", val_acc={self.epoch_val_acc[-1]:.3f}" if self.epoch_val_acc else ""
        div = f", diverged at step {self.stopped_at_step}" if self.diverged else ""
        return f"History(steps={self.steps}, epochs={len(self.epoch_train_loss)}, last_loss={last}{acc}{div})"


class Callback:
    """Hooks into the loop. Override what you need; every method is optional."""

    def on_after_backward(self, step: int, model: nn.Module) -> None:
        """Gradients are populated and not yet clipped or applied."""

    def on_step_end(self, step: int, model: nn.Module, loss: float) -> None:
        """The optimiser has updated the parameters."""

    def on_nonfinite_loss(self, step: int, model: nn.Module, loss: float) -> None:
        """The loss of this step is NaN or infinite: the loop stops here, before backward."""


def global_grad_norm(parameters: Sequence[nn.Parameter] | nn.Module) -> float:
    """L2 norm of all gradients taken together, as clip_grad_norm_ measures it. Params without grad count 0."""
    params = list(parameters.parameters()) if isinstance(parameters, nn.Module) else list(parameters)
    norms = [p.grad.detach().norm(2) for p in params if p.grad is not None]
    if not norms:
        return 0.0
    return float(torch.linalg.vector_norm(torch.stack(norms), 2))


@torch.no_grad()
def evaluate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: LossFn | None = None
) -> tuple[float, float]:
    """(mean loss, accuracy) of a classifier on (x, y), in eval mode; restores the previous mode."""
    loss_fn = loss_fn or nn.functional.cross_entropy
    was_training = model.training
    model.eval()
    try:
        logits = model(x)
        loss = float(loss_fn(logits, y))
        acc = float((logits.argmax(dim=1) == y).float().mean())
    finally:
        model.train(was_training)
    return loss, acc


def train(
    model: nn.Module,
    train_data: tuple[torch.Tensor, torch.Tensor],
    *,
    optimizer: torch.optim.Optimizer | None = None,
    lr: float = 0.1,
    epochs: int = 10,
    batch_size: int = 64,
    loss_fn: LossFn | None = None,
    val_data: tuple[torch.Tensor, torch.Tensor] | None = None,
    clip_norm: float | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    callbacks: Sequence[Callback] = (),
    generator: torch.Generator | None = None,
    max_steps: int | None = None,
    progress: bool = True,
    desc: str = "train",
) -> History:
    """Train `model` on `train_data` with mini-batches; return the History.

    optimizer: defaults to plain SGD with learning rate `lr`.
    loss_fn: defaults to cross-entropy on logits (mean over the batch).
    clip_norm: clip the global gradient norm to this value before each step.
    scheduler: stepped once per optimiser step (not per epoch).
    generator: controls mini-batch order; pass seed_everything()'s to make runs repeat exactly.
    max_steps: stop after this many optimiser steps, even mid-epoch.
    """
    x, y = train_data
    if len(x) == 0:
        raise ValueError("train_data is empty")
    if batch_size < 1 or epochs < 0:
        raise ValueError(f"batch_size must be >= 1 and epochs >= 0, got {batch_size} and {epochs}")
    if clip_norm is not None and not clip_norm > 0:
        raise ValueError(f"clip_norm must be positive, got {clip_norm}")
    loss_fn = loss_fn or nn.functional.cross_entropy
    optimizer = optimizer or torch.optim.SGD(model.parameters(), lr=lr)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    hist = History()
    steps_per_epoch = math.ceil(len(x) / batch_size)
    total = epochs * steps_per_epoch if max_steps is None else min(max_steps, epochs * steps_per_epoch)
    bar = tqdm(total=total, desc=desc, disable=not progress, leave=False)
    step = 0
    model.train()
    try:
        for _epoch in range(epochs):
            epoch_losses: list[float] = []
            for xb, yb in batches(x, y, batch_size, shuffle=True, generator=generator):
                lr_now = optimizer.param_groups[0]["lr"]
                loss = loss_fn(model(xb), yb)  # forward
                loss_value = float(loss.detach())
                if not math.isfinite(loss_value):
                    hist.stopped_at_step = step
                    hist.step_loss.append(loss_value)
                    hist.step_grad_norm.append(float("nan"))
                    hist.step_lr.append(lr_now)
                    for cb in callbacks:
                        cb.on_nonfinite_loss(step, model, loss_value)
                    return hist
                optimizer.zero_grad(set_to_none=True)  # gradients accumulate unless cleared
                loss.backward()  # fills p.grad for every parameter
                for cb in callbacks:
                    cb.on_after_backward(step, model)
                grad_norm = global_grad_norm(params)
                if clip_norm is not None:
                    torch.nn.utils.clip_grad_norm_(params, clip_norm)
                optimizer.step()  # p <- p - lr * p.grad (for SGD)
                if scheduler is not None:
                    scheduler.step()
                hist.step_loss.append(loss_value)
                hist.step_grad_norm.append(grad_norm)
                hist.step_lr.append(lr_now)
                epoch_losses.append(loss_value)
                for cb in callbacks:
                    cb.on_step_end(step, model, loss_value)
                step += 1
                bar.update(1)
                bar.set_postfix(loss=f"{loss_value:.4f}", refresh=False)
                if max_steps is not None and step >= max_steps:
                    break
            hist.epoch_train_loss.append(sum(epoch_losses) / max(len(epoch_losses), 1))
            if val_data is not None:
                val_loss, val_acc = evaluate(model, *val_data, loss_fn=loss_fn)
                hist.epoch_val_loss.append(val_loss)
                hist.epoch_val_acc.append(val_acc)
            if max_steps is not None and step >= max_steps:
                break
    finally:
        bar.close()
    return hist
