"""course_lib.data: the digits split (checked against scikit-learn) and the mini-batch iterator."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits as sk_load_digits
from sklearn.model_selection import train_test_split

from course_lib.data import N_CLASSES, N_FEATURES, DigitsSplit, batches, load_digits

N_DIGITS = 1797


@pytest.fixture(scope="module")
def split() -> DigitsSplit:
    return load_digits(seed=0)


def _rederive_indices(seed: int, val_fraction: float = 0.15, test_fraction: float = 0.15):
    """The row indices of each split, from scikit-learn directly (same seed, same stratification)."""
    bunch = sk_load_digits()
    idx = np.arange(len(bunch.target))
    y = bunch.target
    idx_rest, idx_test, y_rest, _ = train_test_split(
        idx, y, test_size=test_fraction, random_state=seed, stratify=y
    )
    idx_train, idx_val = train_test_split(
        idx_rest, test_size=val_fraction / (1 - test_fraction), random_state=seed, stratify=y_rest
    )
    return bunch, idx_train, idx_val, idx_test


def test_sizes_shapes_dtypes(split):
    n = len(split.y_train) + len(split.y_val) + len(split.y_test)
    assert n == N_DIGITS
    for part in (split.val, split.test):
        assert abs(len(part[1]) - 0.15 * N_DIGITS) <= 1
    for x, y in (split.train, split.val, split.test):
        assert x.shape == (len(y), N_FEATURES)
        assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert "train=" in repr(split) and "float32" in repr(split)


def test_values_in_unit_interval(split):
    for x, _ in (split.train, split.val, split.test):
        assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    assert float(split.x_train.max()) == 1.0  # scaled by 16, not left at 0..16


@pytest.mark.parametrize("seed", [0, 3])
def test_split_matches_sklearn_and_is_disjoint(seed):
    got = load_digits(seed=seed, dtype=torch.float64)
    bunch, idx_train, idx_val, idx_test = _rederive_indices(seed)
    parts = {"train": idx_train, "val": idx_val, "test": idx_test}
    for name, idx in parts.items():
        x, y = getattr(got, name)
        np.testing.assert_array_equal(x.numpy(), bunch.data[idx] / 16.0)
        np.testing.assert_array_equal(y.numpy(), bunch.target[idx])
    all_idx = np.concatenate(list(parts.values()))
    assert len(np.unique(all_idx)) == len(all_idx) == N_DIGITS


def test_split_is_stratified(split):
    full = np.bincount(sk_load_digits().target, minlength=N_CLASSES) / N_DIGITS
    for _, y in (split.train, split.val, split.test):
        counts = np.bincount(y.numpy(), minlength=N_CLASSES)
        assert (counts > 0).all()
        np.testing.assert_allclose(counts / counts.sum(), full, atol=0.01)


def test_deterministic_for_a_seed_and_different_for_another():
    a, b, c = load_digits(seed=11), load_digits(seed=11), load_digits(seed=12)
    for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    assert not torch.equal(a.x_train, c.x_train)
    assert not torch.equal(a.y_test, c.y_test)


def test_dtype_and_device_honoured():
    d = load_digits(dtype=torch.float64, device="meta")
    for x, y in (d.train, d.val, d.test):
        assert x.dtype == torch.float64 and y.dtype == torch.int64
        assert x.device.type == "meta" and y.device.type == "meta"


def test_standardize():
    d = load_digits(standardize=True, dtype=torch.float64)
    raw = load_digits(dtype=torch.float64)
    std_raw = raw.x_train.std(dim=0, unbiased=False)
    varying = std_raw > 0
    assert 0 < int((~varying).sum()) < N_FEATURES  # digits has some always-blank pixels
    mean, std = d.x_train.mean(dim=0), d.x_train.std(dim=0, unbiased=False)
    torch.testing.assert_close(mean, torch.zeros_like(mean), atol=1e-10, rtol=0)
    torch.testing.assert_close(std[varying], torch.ones_like(std[varying]), atol=1e-10, rtol=0)
    # constant pixels keep std 1, so they stay constant (0) and finite
    assert torch.equal(d.x_train[:, ~varying], torch.zeros_like(d.x_train[:, ~varying]))
    # validation uses the training statistics, not its own
    m = raw.x_train.mean(dim=0)
    s = torch.where(varying, std_raw, torch.ones_like(std_raw))
    torch.testing.assert_close(d.x_val, (raw.x_val - m) / s)


@pytest.mark.parametrize(
    "val_fraction, test_fraction",
    [(0.0, 0.15), (0.15, 0.0), (1.0, 0.15), (-0.1, 0.2), (0.5, 0.5), (0.6, 0.5)],
)
def test_bad_fractions_raise(val_fraction, test_fraction):
    with pytest.raises(ValueError, match="fraction"):
        load_digits(val_fraction=val_fraction, test_fraction=test_fraction)


# ---- batches ---------------------------------------------------------------------------------


def _data(n: int = 23):
    x = torch.arange(n, dtype=torch.float32).unsqueeze(1) * torch.ones(1, 3)  # (n, 3), row i = i
    y = torch.arange(n)
    return x, y


@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("batch_size", [1, 5, 23, 100])
def test_batches_cover_every_row_once(shuffle, batch_size):
    x, y = _data(23)
    got = list(batches(x, y, batch_size, shuffle=shuffle, generator=torch.Generator().manual_seed(0)))
    assert len(got) == math.ceil(23 / batch_size)
    seen = torch.cat([yb for _, yb in got])
    assert sorted(seen.tolist()) == list(range(23))
    for xb, yb in got:  # rows stay paired with their labels
        assert torch.equal(xb[:, 0].long(), yb)
    if not shuffle:
        assert seen.tolist() == list(range(23))


def test_batch_sizes_last_smaller():
    x, y = _data(23)
    sizes = [len(yb) for _, yb in batches(x, y, 5, shuffle=False)]
    assert sizes == [5, 5, 5, 5, 3]


def test_drop_last():
    x, y = _data(23)
    sizes = [len(yb) for _, yb in batches(x, y, 5, shuffle=True, drop_last=True)]
    assert sizes == [5, 5, 5, 5]
    assert list(batches(x, y, 30, drop_last=True)) == []
    assert [len(yb) for _, yb in batches(x, y, 23, drop_last=True)] == [23]


def test_shuffle_reproducible_with_generator():
    x, y = _data(50)

    def order(seed):
        return torch.cat([yb for _, yb in batches(x, y, 8, generator=torch.Generator().manual_seed(seed))])

    assert torch.equal(order(4), order(4))
    assert not torch.equal(order(4), order(5))
    assert not torch.equal(order(4), torch.arange(50))
    # the order is torch.randperm's with that generator
    assert torch.equal(order(4), torch.randperm(50, generator=torch.Generator().manual_seed(4)))


def test_mismatched_lengths_raise():
    x, _ = _data(10)
    with pytest.raises(ValueError, match="rows"):
        list(batches(x, torch.arange(9), 4))


@pytest.mark.parametrize("batch_size", [0, -3])
def test_bad_batch_size_raises(batch_size):
    x, y = _data(10)
    with pytest.raises(ValueError, match="batch_size"):
        list(batches(x, y, batch_size))


# ---------------------------------------------------------------------------- adding problem


def test_adding_problem_shapes_markers_and_targets():
    from course_lib.data import adding_problem

    x, y = adding_problem(500, 12, torch.Generator().manual_seed(0))
    assert x.shape == (500, 12, 2) and y.shape == (500, 1)
    assert x.dtype == torch.float32 and y.dtype == torch.float32
    values, markers = x[..., 0], x[..., 1]
    assert ((values >= 0) & (values < 1)).all()
    assert set(markers.unique().tolist()) == {0.0, 1.0}
    assert (markers.sum(dim=1) == 2).all(), "exactly two distinct marked steps per sequence"
    torch.testing.assert_close(y[:, 0], (values * markers).sum(dim=1))


def test_adding_problem_positions_are_uniform_pairs_and_seeded():
    from course_lib.data import adding_problem

    T, n = 5, 20_000
    x, _ = adding_problem(n, T, torch.Generator().manual_seed(1))
    marked = x[..., 1].nonzero()[:, 1].reshape(n, 2)  # the two marked steps, in order
    pairs = torch.bincount(marked[:, 0] * T + marked[:, 1], minlength=T * T).reshape(T, T)
    expected = n / math.comb(T, 2)  # every unordered pair of distinct steps equally likely
    upper = pairs[torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)]
    assert pairs.diagonal().sum() == 0
    assert ((upper - expected).abs() < 5 * math.sqrt(expected)).all(), upper
    again, _ = adding_problem(n, T, torch.Generator().manual_seed(1))
    assert torch.equal(x, again)


def test_adding_problem_baseline_is_one_sixth():
    from course_lib.data import adding_problem

    _, y = adding_problem(50_000, 40, torch.Generator().manual_seed(2))
    assert abs(y.mean().item() - 1) < 0.01
    assert abs(((y - 1) ** 2).mean().item() - 1 / 6) < 0.005


@pytest.mark.parametrize(("n", "T"), [(0, 5), (3, 1)])
def test_adding_problem_bad_sizes_raise(n, T):
    from course_lib.data import adding_problem

    with pytest.raises(ValueError, match="T >= 2"):
        adding_problem(n, T)
