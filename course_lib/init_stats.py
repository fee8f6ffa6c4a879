"""How the spread of activations and gradients changes from layer to layer at initialisation.

Chapter 5 compares initialisations by what they do to the signal: the standard deviation
of every layer's pre-activations on the way forward, and of the back-propagated gradient on
the way back (Glorot & Bengio 2010; He et al. 2015). This module measures those numbers; the
formulas that predict them are derived in the chapter, not computed here.

- stack_stats: a random fully connected stack h_l = φ(h_{l-1} W_lᵀ + b_l), l = 1..L, with
  W_l ~ N(0, σ_w²) and b_l ~ N(0, σ_b²), measured forward and backward in one pass. No
  nn.Module: 50 layers of width 256 take a few tens of milliseconds.
- linear_output_stds: the std of every nn.Linear's output of a model on a batch (forward hooks).
- init_std_explorer: the chapter's interactive figure, activation × initialisation scheme,
  a StaticExplorer (course_lib.static_explorer) over stack_stats.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import nn

from .plots import STYLE
from .static_explorer import Control, StaticExplorer

ACTIVATIONS = {
    "linear": lambda z: z,
    "tanh": torch.tanh,
    "relu": F.relu,
    "sigmoid": torch.sigmoid,
}


@dataclass(frozen=True)
class StackStats:
    """Per-layer statistics of one random stack; index l-1 holds layer l (l = 1 is next to the input)."""

    pre_std: np.ndarray  # (L,) std of z_l = h_{l-1} W_lᵀ + b_l over batch and units
    post_std: np.ndarray  # (L,) std of h_l = φ(z_l)
    grad_std: np.ndarray  # (L,) std of ∂S/∂z_l, S = Σ v ⊙ h_L with v ~ N(0, 1): the backward signal
    input_std: float  # std of h_0

    @property
    def depth(self) -> int:
        return len(self.pre_std)

    def __repr__(self) -> str:
        return (
            f"StackStats(depth={self.depth}, pre_std {self.pre_std[0]:.3g} -> {self.pre_std[-1]:.3g}, "
            f"grad_std {self.grad_std[0]:.3g} <- {self.grad_std[-1]:.3g})"
        )


def stack_stats(
    depth: int,
    width: int,
    activation: str,
    weight_std: float | Sequence[float],
    *,
    bias_std: float = 0.0,
    batch: int = 256,
    x: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
) -> StackStats:
    """Measure a random stack of `depth` square layers of `width` units at initialisation.

    weight_std: σ_w of every W_l's entries (one float), or one per layer.
    x: the input h_0 (batch, width); default N(0, 1) entries. The backward signal starts from
    a random v ~ N(0, 1) at the top, so that grad_std[-1] ≈ std of φ'(z_L).
    Non-finite values (an exploding stack) are kept: they show where float64 gave up.
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    if depth < 1 or width < 1 or batch < 2:
        raise ValueError(f"need depth >= 1, width >= 1, batch >= 2; got {depth}, {width}, {batch}")
    stds = [float(weight_std)] * depth if np.isscalar(weight_std) else [float(s) for s in weight_std]
    if len(stds) != depth:
        raise ValueError(f"weight_std has {len(stds)} entries for {depth} layers")
    phi = ACTIVATIONS[activation]
    if x is None:
        x = torch.randn(batch, width, generator=generator, dtype=dtype)
    h = x.to(dtype)
    zs, pre, post = [], [], []
    with torch.enable_grad():
        for s in stds:
            w = s * torch.randn(width, h.shape[1], generator=generator, dtype=dtype)  # (n_out, n_in)
            b = bias_std * torch.randn(width, generator=generator, dtype=dtype)
            z = (h.detach() @ w.T + b).requires_grad_(True)  # (B, n): each layer its own leaf
            zs.append((z, w))
            h = phi(z)
            pre.append(z.detach().std().item())
            post.append(h.detach().std().item())
        # backward by hand, one layer at a time: ∂S/∂z_l = (∂S/∂h_l) φ'(z_l), ∂S/∂h_{l-1} = (∂S/∂z_l) W_l
        g_h = torch.randn(h.shape, generator=generator, dtype=dtype)
        grads = []
        for z, w in reversed(zs):
            (g_z,) = torch.autograd.grad(phi(z), z, grad_outputs=g_h)
            grads.append(g_z.std().item())
            g_h = g_z @ w
    return StackStats(np.array(pre), np.array(post), np.array(grads[::-1]), float(x.std()))


def linear_output_stds(model: nn.Module, x: torch.Tensor) -> dict[str, float]:
    """{name: std of the module's output} for every nn.Linear of `model`, on one forward pass of x.

    The std is over all entries of the output (examples × units), as torch.std computes it.
    Hooks are removed before returning; the model is not changed.
    """
    stds: dict[str, float] = {}
    handles = []

    def hook_for(name: str):
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            stds[name] = output.detach().std().item()

        return hook

    try:
        for name, module in model.named_modules():
            if isinstance(module, nn.Linear):
                handles.append(module.register_forward_hook(hook_for(name)))
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return stds


# ---------------------------------------------------------------------------------------------
# the chapter's explorer: activation std through a deep stack, for each initialisation scheme

# n·Var(W) for a square layer of width n under each scheme (σ_w = sqrt(value / n)); absolute
# stds for the two fixed normals. PyTorch's default U(±1/sqrt(n)) has variance 1/(3n).
SCHEMES: dict[str, tuple[str, float]] = {
    "N(0, 1)": ("std", 1.0),
    "N(0, 0.01²)": ("std", 0.01),
    "PyTorch default": ("n_var", 1 / 3),
    "Xavier": ("n_var", 1.0),
    "He": ("n_var", 2.0),
}


def scheme_weight_std(scheme: str, width: int) -> float:
    """σ_w of a square layer of `width` units under one of SCHEMES."""
    kind, value = SCHEMES[scheme]
    return value if kind == "std" else math.sqrt(value / width)


def render_init_std(activation: str, scheme: str, depth: int = 50, width: int = 256, seed: int = 0) -> Figure:
    """std of z_l forward and of ∂S/∂z_l backward, layer by layer, for one activation and scheme."""
    gen = torch.Generator().manual_seed(seed)
    sigma = scheme_weight_std(scheme, width)
    stats = stack_stats(depth, width, activation, sigma, batch=128, generator=gen)
    layers = np.arange(1, depth + 1)
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(6.4, 4.0))
        with np.errstate(all="ignore"):
            fwd = np.where(np.isfinite(stats.pre_std), stats.pre_std, np.nan)
            bwd = np.where(np.isfinite(stats.grad_std), stats.grad_std, np.nan)
        ax.semilogy(layers, fwd, "o-", ms=3, label="forward: std of $z_l$")
        ax.semilogy(layers, bwd, "s--", ms=3, label="backward: std of $\\partial S/\\partial z_l$")
        ax.axhline(1.0, color="0.5", lw=0.8)
        ax.set(xlabel="layer l (input → output)", ylabel="standard deviation", ylim=(1e-50, 1e50))
        last = stats.pre_std[-1]
        ax.set_title(f"{activation}, {scheme}: std of $z_{{{depth}}}$ = {last:.2g}", fontsize=10)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2)
        fig.tight_layout()
    return fig


def init_std_explorer(
    activations: Sequence[str] = ("tanh", "relu"),
    schemes: Sequence[str] = tuple(SCHEMES),
    *,
    depth: int = 50,
    width: int = 256,
) -> StaticExplorer:
    """activation × initialisation scheme over a random stack's forward and backward std."""

    def render(activation: str, scheme: str) -> Figure:
        return render_init_std(activation, scheme, depth=depth, width=width)

    render.__name__ = "render_init_std"
    return StaticExplorer(
        render,
        [
            Control("activation", tuple(activations), widget="select"),
            Control("scheme", tuple(schemes), label="initialisation", widget="select"),
        ],
        title=f"Signal through {depth} random layers of width {width}: activation × initialisation",
    )
