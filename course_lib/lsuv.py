"""Layer-sequential unit-variance (LSUV) initialisation (Mishkin & Matas 2016, "All you need is a good init").

A data-dependent initialisation: instead of predicting each layer's output variance from a
formula, measure it on a batch and rescale.

1. Pre-initialise every weight matrix with an orthonormal one (optional).
2. For each layer in forward order: run the batch through the network, read the variance
   of this layer's output, and divide its weight by the output's std; repeat until the
   variance is within `tol` of 1 or `max_iter` rescalings are done. Later layers are
   measured after the earlier ones were fixed, so each sees the signal it will really get.

Biases are left as they are (the paper uses zero biases). Layers: every nn.Linear, in the
order of model.named_modules().
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class LSUVStep:
    """What LSUV did to one layer."""

    name: str  # the layer's name in model.named_modules()
    std_before: float  # output std after the (orthogonal) pre-initialisation, before rescaling
    std_after: float  # output std after the last rescaling
    iterations: int  # rescalings applied (0: already within tolerance)

    def __repr__(self) -> str:
        return (
            f"LSUVStep({self.name}: std {self.std_before:.3g} -> {self.std_after:.3g}, "
            f"{self.iterations} rescalings)"
        )


def _output_std(model: nn.Module, module: nn.Module, x: torch.Tensor) -> float:
    seen: list[torch.Tensor] = []
    handle = module.register_forward_hook(lambda m, i, out: seen.append(out.detach()))
    try:
        model(x)
    finally:
        handle.remove()
    return seen[0].std().item()


@torch.no_grad()
def lsuv_(
    model: nn.Module,
    x: torch.Tensor,
    *,
    tol: float = 0.1,
    max_iter: int = 10,
    orthogonal: bool = True,
    generator: torch.Generator | None = None,
) -> list[LSUVStep]:
    """Apply LSUV to every nn.Linear of `model` in place, using the batch `x`; return what it did.

    tol: stop rescaling a layer when |Var(output) - 1| < tol (the paper's Tol_var, 0.1).
    max_iter: at most this many rescalings per layer (the paper's T_max, 10).
    orthogonal: pre-initialise the weights with orthonormal matrices first (the paper does).
    """
    if not tol > 0 or max_iter < 1:
        raise ValueError(f"need tol > 0 and max_iter >= 1, got {tol} and {max_iter}")
    linears = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("the model has no nn.Linear layer")
    was_training = model.training
    model.eval()
    try:
        if orthogonal:
            for _, m in linears:
                nn.init.orthogonal_(m.weight, generator=generator)  # QR of a Gaussian matrix
        steps = []
        for name, m in linears:
            std = before = _output_std(model, m, x)
            k = 0
            while abs(std**2 - 1) >= tol and k < max_iter and std > 0:
                m.weight.div_(std)
                std = _output_std(model, m, x)
                k += 1
            steps.append(LSUVStep(name, before, std, k))
    finally:
        model.train(was_training)
    return steps
