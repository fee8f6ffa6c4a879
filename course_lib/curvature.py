"""Curvature of a loss: Hessian-vector products and the largest Hessian eigenvalues.

A network with n parameters has an n × n Hessian H = ∇²L: 4.6 million entries for a
64-32-10 MLP on digits, and far beyond memory for real networks. What is cheap is the
product H v for one vector v: differentiate the scalar (∇L)·v once more,

    H v = ∇_θ ( ∇_θ L(θ) · v ),

which costs about two backward passes and never forms H (Pearlmutter 1994). Everything
here is built on that product:

- hvp: H v for a loss closure and a list of parameters (vectors flattened in parameter order).
- hessian: the dense Hessian, one hvp per column; for small models and for tests.
- top_eigenvalues: the k largest eigenvalues of H by the Lanczos method (scipy's ARPACK
  `eigsh`), which needs only hvp. Chapter 4 uses λ_max for the stability limit η < 2/λ_max.

Flat vectors follow `torch.nn.utils.parameters_to_vector`'s order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy.sparse.linalg import LinearOperator, eigsh
from torch import nn

LossFn = Callable[[], torch.Tensor]  # a closure: recomputes the scalar loss from the current parameters


def model_loss(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
) -> LossFn:
    """A closure computing loss(model(x), y): the full-batch loss whose curvature we want."""

    def closure() -> torch.Tensor:
        return loss(model(x), y)

    return closure


def _params(params: nn.Module | Sequence[torch.Tensor]) -> list[torch.Tensor]:
    ps = list(params.parameters()) if isinstance(params, nn.Module) else list(params)
    ps = [p for p in ps if p.requires_grad]
    if not ps:
        raise ValueError("no parameter requires a gradient")
    return ps


def _flat(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


class HessianOperator:
    """v ↦ H v at the current parameters. The gradient graph is built once and reused.

    Build a new operator after the parameters change: it holds the gradient at the point
    where it was created.
    """

    def __init__(self, loss_fn: LossFn, params: nn.Module | Sequence[torch.Tensor]):
        self.params = _params(params)
        self.n = sum(p.numel() for p in self.params)
        loss = loss_fn()
        if loss.dim() != 0:
            raise ValueError(f"the loss must be a scalar, got shape {tuple(loss.shape)}")
        self.loss = float(loss.detach())
        self._grads = torch.autograd.grad(loss, self.params, create_graph=True)
        self.grad = _flat(self._grads).detach()  # ∇L at this point, (n,)

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        """H v for a flat vector v of length n; returns a flat (n,) tensor."""
        if v.shape != (self.n,):
            raise ValueError(f"v must have shape ({self.n},), got {tuple(v.shape)}")
        v = v.to(self.grad.dtype)
        dot = sum((g * vi).sum() for g, vi in zip(self._grads, self._split(v), strict=True))
        hv = torch.autograd.grad(dot, self.params, retain_graph=True, allow_unused=True)
        return _flat(
            [torch.zeros_like(p) if h is None else h for h, p in zip(hv, self.params, strict=True)]
        ).detach()

    def _split(self, v: torch.Tensor) -> list[torch.Tensor]:
        out, i = [], 0
        for p in self.params:
            out.append(v[i : i + p.numel()].view_as(p))
            i += p.numel()
        return out

    def __repr__(self) -> str:
        return f"HessianOperator(n={self.n}, loss={self.loss:.4g})"


def hvp(loss_fn: LossFn, params: nn.Module | Sequence[torch.Tensor], v: torch.Tensor) -> torch.Tensor:
    """The Hessian-vector product H v of loss_fn() at the current parameters, v flat (n,)."""
    return HessianOperator(loss_fn, params)(v)


def hessian(loss_fn: LossFn, params: nn.Module | Sequence[torch.Tensor]) -> torch.Tensor:
    """The dense (n, n) Hessian, column by column with hvp: only for small n."""
    op = HessianOperator(loss_fn, params)
    eye = torch.eye(op.n, dtype=op.grad.dtype)
    return torch.stack([op(eye[i]) for i in range(op.n)], dim=1)


def top_eigenvalues(
    loss_fn: LossFn,
    params: nn.Module | Sequence[torch.Tensor],
    k: int = 1,
    *,
    tol: float = 1e-6,
    seed: int = 0,
    vectors: bool = False,
) -> np.ndarray | tuple[np.ndarray, torch.Tensor]:
    """The k largest (algebraic) eigenvalues of the Hessian, in decreasing order.

    Lanczos iteration (ARPACK via scipy.sparse.linalg.eigsh, which="LA") on HessianOperator:
    a Krylov method that needs only products H v. The start vector is drawn from `seed`,
    so the result repeats exactly. vectors=True also returns the unit eigenvectors as the
    columns of an (n, k) tensor, flat in parameter order.
    """
    op = HessianOperator(loss_fn, params)
    if not 1 <= k < op.n:
        raise ValueError(f"k must be in [1, {op.n - 1}], got {k}")

    def matvec(v: np.ndarray) -> np.ndarray:
        t = torch.as_tensor(np.ascontiguousarray(v).reshape(-1), dtype=op.grad.dtype)
        return op(t).to(torch.float64).numpy()

    linop = LinearOperator((op.n, op.n), matvec=matvec, dtype=np.float64)
    v0 = np.random.default_rng(seed).standard_normal(op.n)
    if not vectors:
        vals = eigsh(linop, k=k, which="LA", tol=tol, v0=v0, return_eigenvectors=False)
        return np.sort(vals)[::-1].copy()
    vals, vecs = eigsh(linop, k=k, which="LA", tol=tol, v0=v0)
    order = np.argsort(vals)[::-1]
    return vals[order].copy(), torch.as_tensor(vecs[:, order].copy(), dtype=op.grad.dtype)
