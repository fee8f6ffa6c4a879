"""Deep linear networks f(x) = W_L ⋯ W_2 W_1 x, and their gradients in closed form.

With no nonlinearity the product-of-Jacobians argument is exact: the gradient that
reaches layer l is the loss gradient multiplied by the transposed weights above it,
and every weight gradient is an outer product of a backward and a forward signal
(Saxe et al. 2013). With W_l = s·Q_l for orthogonal Q_l the norms are powers of s:

    ‖∂L/∂h_l‖_F = s^(L-l) ‖E‖_F          (h_l: output of layer l, E = ∂L/∂f)
    ‖∂L/∂W_l‖_F = s^(L-1) ‖Eᵀ X‖_F       (the same for every layer)

so s > 1 makes the back-propagated signal grow geometrically towards the input
(exploding) and s < 1 makes it shrink (vanishing), while the weight gradients stay
level: the forward and backward factors cancel. The loss throughout is the mean
squared error L = (1/2B) Σ_b ‖f(x_b) - y_b‖², so E = (f(X) - Y) / B.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import nn

INITS = ("orthogonal", "normal")


def make_deep_linear(
    depth: int,
    width: int,
    *,
    in_features: int | None = None,
    out_features: int | None = None,
    weight_scale: float = 1.0,
    init: str = "orthogonal",
    generator: torch.Generator | None = None,
) -> nn.Sequential:
    """A bias-free stack of `depth` Linear layers named layer1..layerL.

    init="orthogonal": W_l = weight_scale · Q_l, Q_l with orthonormal rows or columns.
    init="normal":     W_l ~ N(0, weight_scale² / fan_in), the same gain in expectation.
    weight_scale is the per-layer gain: 1 preserves norms, 1.5 grows them 1.5× per layer.
    """
    if depth < 1 or width < 1:
        raise ValueError(f"depth and width must be >= 1, got depth={depth}, width={width}")
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    if not weight_scale > 0:
        raise ValueError(f"weight_scale must be positive, got {weight_scale}")
    widths = [in_features or width] + [width] * (depth - 1) + [out_features or width]
    layers: dict[str, nn.Module] = {}
    for i in range(depth):
        layer = nn.Linear(widths[i], widths[i + 1], bias=False)
        with torch.no_grad():
            w = torch.empty(widths[i + 1], widths[i])
            if init == "orthogonal":  # a uniformly (Haar) distributed orthogonal matrix, scaled
                nn.init.orthogonal_(w, gain=weight_scale, generator=generator)
            else:
                w.normal_(0.0, weight_scale / math.sqrt(widths[i]), generator=generator)
            layer.weight.copy_(w)
        layers[f"layer{i + 1}"] = layer
    return nn.Sequential(OrderedDict(layers))


def half_mse(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L = (1/2B) Σ_b ‖output_b - target_b‖²: the loss the closed forms assume. (B, d), (B, d) -> ()."""
    return 0.5 * (output - target).pow(2).sum() / output.shape[0]


def weights_of(model: nn.Sequential) -> list[torch.Tensor]:
    """[W_1, ..., W_L] of a deep linear net, detached, in forward order."""
    layers = list(model)
    if not layers or not all(isinstance(m, nn.Linear) and m.bias is None for m in layers):
        raise ValueError("expected an nn.Sequential of bias-free nn.Linear layers (make_deep_linear)")
    return [m.weight.detach() for m in layers]


def closed_form_gradients(
    weights: list[torch.Tensor], x: torch.Tensor, y: torch.Tensor
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(∂L/∂h_l for each layer, ∂L/∂W_l for each layer) by matrix products alone, no autograd.

    Rows are examples: h_0 = X (B, d_0), h_l = h_{l-1} W_lᵀ (B, d_l), f = h_L.
    E = ∂L/∂h_L = (h_L - Y)/B;  ∂L/∂h_{l-1} = ∂L/∂h_l · W_l;  ∂L/∂W_l = (∂L/∂h_l)ᵀ h_{l-1}.
    """
    hs = [x]
    for w in weights:
        hs.append(hs[-1] @ w.T)  # (B, d_l)
    g = (hs[-1] - y) / x.shape[0]  # (B, d_L)
    out_grads: list[torch.Tensor] = [g]
    for w in reversed(weights[1:]):
        g = g @ w  # (B, d_{l-1})
        out_grads.append(g)
    out_grads.reverse()  # out_grads[l-1] = ∂L/∂h_l
    weight_grads = [gl.T @ hprev for gl, hprev in zip(out_grads, hs[:-1], strict=True)]
    return out_grads, weight_grads


def scaled_orthogonal_norms(
    depth: int, weight_scale: float, error_norm: float, error_input_norm: float
) -> tuple[list[float], list[float]]:
    """The closed form for W_l = s·Q_l: ([‖∂L/∂h_l‖], [‖∂L/∂W_l‖]) for l = 1..L.

    error_norm = ‖E‖_F, error_input_norm = ‖Eᵀ X‖_F with E = ∂L/∂f (B, d_L), X the input (B, d_0).
    Holds exactly for square layers (orthogonal Q preserves Frobenius norms on either side).
    """
    s, big_l = weight_scale, depth
    out = [s ** (big_l - ell) * error_norm for ell in range(1, big_l + 1)]
    wgt = [s ** (big_l - 1) * error_input_norm for _ in range(big_l)]
    return out, wgt
