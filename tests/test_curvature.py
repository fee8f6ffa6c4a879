"""course_lib.curvature: Hessian-vector products and top eigenvalues against torch.autograd.functional.hessian."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.functional import hessian as torch_hessian

from course_lib.curvature import HessianOperator, hessian, hvp, model_loss, top_eigenvalues


def _small_net(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    net = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3)).double()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
    x = torch.randn(20, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (20,), generator=g)
    return net, x, y


def _reference_hessian(net, x, y) -> torch.Tensor:
    """The dense Hessian by torch.autograd.functional.hessian on the flat parameter vector."""
    params = list(net.parameters())
    shapes = [p.shape for p in params]
    flat0 = torch.cat([p.detach().reshape(-1) for p in params])

    def f(theta):
        out, i = x, 0
        ws = []
        for s in shapes:
            n = int(np.prod(s))
            ws.append(theta[i : i + n].view(s))
            i += n
        out = torch.tanh(out @ ws[0].T + ws[1]) @ ws[2].T + ws[3]
        return F.cross_entropy(out, y)

    return torch_hessian(f, flat0)


def test_hessian_equals_torch_hessian():
    net, x, y = _small_net()
    h = hessian(model_loss(net, x, y), net)
    ref = _reference_hessian(net, x, y)
    assert h.shape == ref.shape == (39, 39)
    torch.testing.assert_close(h, ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(h, h.T, rtol=1e-10, atol=1e-12)  # symmetric


def test_hvp_equals_dense_product_and_reuses_graph():
    net, x, y = _small_net(1)
    ref = _reference_hessian(net, x, y)
    op = HessianOperator(model_loss(net, x, y), net)
    g = torch.Generator().manual_seed(3)
    for _ in range(3):  # several products from one operator
        v = torch.randn(op.n, generator=g, dtype=torch.float64)
        torch.testing.assert_close(op(v), ref @ v, rtol=1e-10, atol=1e-12)
    v = torch.randn(op.n, generator=g, dtype=torch.float64)
    torch.testing.assert_close(hvp(model_loss(net, x, y), net, v), ref @ v, rtol=1e-10, atol=1e-12)
    assert "HessianOperator(n=39" in repr(op)


def test_hvp_of_a_quadratic_is_the_matrix():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(6, 6, generator=g, dtype=torch.float64)
    a = a @ a.T
    w = torch.randn(6, generator=g, dtype=torch.float64, requires_grad=True)
    v = torch.randn(6, generator=g, dtype=torch.float64)
    torch.testing.assert_close(hvp(lambda: 0.5 * w @ a @ w, [w], v), a @ v)


def test_top_eigenvalues_equal_eigvalsh():
    net, x, y = _small_net(2)
    ref = torch.linalg.eigvalsh(_reference_hessian(net, x, y)).flip(0).numpy()
    vals = top_eigenvalues(model_loss(net, x, y), net, k=3)
    np.testing.assert_allclose(vals, ref[:3], rtol=1e-6, atol=1e-9)
    again = top_eigenvalues(model_loss(net, x, y), net, k=3)
    np.testing.assert_array_equal(vals, again)  # seeded start vector: repeats exactly


def test_top_eigenvectors_satisfy_the_eigen_equation():
    net, x, y = _small_net(4)
    vals, vecs = top_eigenvalues(model_loss(net, x, y), net, k=2, vectors=True)
    ref = _reference_hessian(net, x, y)
    assert vecs.shape == (39, 2)
    for j in range(2):
        torch.testing.assert_close(ref @ vecs[:, j], vals[j] * vecs[:, j], rtol=1e-5, atol=1e-7)
        assert abs(float(vecs[:, j].norm()) - 1) < 1e-8


def test_bad_arguments_fail_loudly():
    net, x, y = _small_net()
    op = HessianOperator(model_loss(net, x, y), net)
    with pytest.raises(ValueError, match="shape"):
        op(torch.zeros(5, dtype=torch.float64))
    with pytest.raises(ValueError, match="k must be"):
        top_eigenvalues(model_loss(net, x, y), net, k=0)
    with pytest.raises(ValueError, match="scalar"):
        HessianOperator(lambda: net(x).sum(1), net)
    frozen = nn.Linear(2, 2)
    frozen.requires_grad_(False)
    with pytest.raises(ValueError, match="no parameter"):
        HessianOperator(lambda: frozen(torch.ones(1, 2)).sum(), frozen)
