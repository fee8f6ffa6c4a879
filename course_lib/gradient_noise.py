"""Per-example gradients and the noise of mini-batch gradients (chapter 1).

The loss of a data set is a mean over examples, L = (1/N) Σ ℓ_n, so its gradient is the
mean of the per-example gradients ∇ℓ_n. A mini-batch of B examples drawn without
replacement estimates it with expected squared error

    E‖g_B − g‖² = σ²/B · (N − B)/(N − 1),    σ² = (1/N) Σ ‖∇ℓ_n − g‖²,

and σ²/‖g‖² is the "simple gradient noise scale" of McCandlish et al. (2018), the batch size
beyond which larger batches stop paying for themselves.

`per_example_gradients` computes all ∇ℓ_n at once with torch.func (vmap over examples of
the gradient of one example's loss); `minibatch_gradient_error` measures E‖g_B − g‖² over
random batches without forming any of them, through the Gram matrix of the deviations.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.func import functional_call, grad, vmap


def per_example_gradients(
    model: nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
) -> torch.Tensor:
    """G (N, P): row n is the gradient of loss_fn(model(x[n:n+1]), y[n:n+1]) over all P parameters,
    flattened in the order of model.parameters(). G.mean(0) is the gradient of the mean loss.

    The model must treat examples independently (no BatchNorm in training mode).
    """
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} rows but y has {len(y)}")
    params = {k: v.detach() for k, v in model.named_parameters()}

    def one_loss(p, x1, y1):  # the loss of ONE example as a function of the parameters
        return loss_fn(functional_call(model, p, (x1[None],)), y1[None])

    grads = vmap(grad(one_loss), in_dims=(None, 0, 0))(params, x, y)  # name -> (N, *shape)
    return torch.cat([grads[k].reshape(len(x), -1) for k in params], dim=1)


def noise_scale(G: torch.Tensor) -> tuple[float, float]:
    """(σ², ‖g‖²) of per-example gradients G (N, P): the single-example noise and the signal."""
    g = G.mean(0)
    return (G - g).pow(2).sum(1).mean().item(), g.pow(2).sum().item()


def expected_minibatch_error(sigma2: float, n: int, batch_sizes: Sequence[int]) -> list[float]:
    """σ²/B · (N − B)/(N − 1) for each B: E‖g_B − g‖² for batches drawn without replacement."""
    return [sigma2 / b * (n - b) / (n - 1) for b in batch_sizes]


def minibatch_gradient_error(
    G: torch.Tensor,
    batch_sizes: Sequence[int],
    *,
    n_batches: int = 300,
    generator: torch.Generator | None = None,
) -> list[float]:
    """Measured E‖g_B − g‖² for each batch size B, averaged over n_batches random batches
    drawn without replacement from the N rows of G (N, P).

    ‖mean of rows S of D‖² = (Σ_{i,j ∈ S} K_ij) / B² with D = G − g and K = D Dᵀ (N, N), so the
    cost is one N×N Gram matrix, whatever P and however many batches.
    """
    n = len(G)
    if any(not 1 <= b <= n for b in batch_sizes):
        raise ValueError(f"batch sizes must lie in 1..{n}, got {list(batch_sizes)}")
    D = G - G.mean(0)  # (N, P)
    K = D @ D.T  # (N, N)
    out = []
    for b in batch_sizes:
        idx = torch.rand(n_batches, n, generator=generator).argsort(dim=1)[:, :b]  # (n_batches, B)
        mask = torch.zeros(n_batches, n, dtype=G.dtype).scatter_(1, idx, 1.0)  # 1 where in the batch
        out.append(((mask @ K) * mask).sum(1).mean().item() / b**2)
    return out
