"""Data sets that ship with a package or are generated in code: nothing is downloaded.

Digits is scikit-learn's bundled copy of the UCI handwritten digits (1797 images,
8x8 pixels, values 0..16). The split is fixed by a seed and stratified by class,
so every chapter, exercise and test sees the same train/validation/test sets.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.datasets import load_digits as _sk_load_digits
from sklearn.model_selection import train_test_split

N_CLASSES = 10
N_FEATURES = 64


@dataclass(frozen=True)
class DigitsSplit:
    """Digits as tensors. x_*: (N, 64) pixel intensities scaled to [0, 1]; y_*: (N,) int64 labels."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    @property
    def train(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x_train, self.y_train

    @property
    def val(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x_val, self.y_val

    @property
    def test(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x_test, self.y_test

    def __repr__(self) -> str:
        return (
            f"DigitsSplit(train={len(self.y_train)}, val={len(self.y_val)}, "
            f"test={len(self.y_test)}, features={self.x_train.shape[1]}, "
            f"dtype={self.x_train.dtype}, device={self.x_train.device})"
        )


def load_digits(
    *,
    seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    standardize: bool = False,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> DigitsSplit:
    """The digits data set with a fixed, stratified train/validation/test split.

    standardize: subtract the training mean and divide by the training std per pixel
    (constant pixels keep std 1), instead of the default scaling to [0, 1].
    """
    if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(
            f"val_fraction and test_fraction must be in (0, 1) and sum below 1, "
            f"got {val_fraction} and {test_fraction}"
        )
    bunch = _sk_load_digits()
    x = bunch.data.astype(np.float64) / 16.0
    y = bunch.target.astype(np.int64)
    x_rest, x_test, y_rest, y_test = train_test_split(
        x, y, test_size=test_fraction, random_state=seed, stratify=y
    )
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=val_fraction / (1 - test_fraction), random_state=seed, stratify=y_rest
    )
    if standardize:
        mean = x_train.mean(axis=0)
        std = x_train.std(axis=0)
        std[std == 0] = 1.0
        x_train, x_val, x_test = ((a - mean) / std for a in (x_train, x_val, x_test))

    def tx(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(a, dtype=dtype, device=device)

    def ty(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(a, dtype=torch.int64, device=device)

    return DigitsSplit(tx(x_train), ty(y_train), tx(x_val), ty(y_val), tx(x_test), ty(y_test))


def batches(
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    *,
    shuffle: bool = True,
    generator: torch.Generator | None = None,
    drop_last: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (x_batch, y_batch) mini-batches; one pass over the data is one epoch.

    batch_size >= len(x) gives full-batch gradient descent; batch_size=1 gives SGD
    in its original, one-example-at-a-time sense. Bad arguments fail here, at the call.
    """
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} rows but y has {len(y)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = len(x)
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    order = order.to(x.device)
    stop = n - n % batch_size if drop_last else n
    return ((x[idx], y[idx]) for idx in (order[s : s + batch_size] for s in range(0, stop, batch_size)))


def adding_problem(
    n: int, T: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """n sequences of the adding problem (Hochreiter & Schmidhuber 1997, experiment 4).

    Each step carries a pair (value, marker): values ~ U[0, 1), and exactly two markers are 1,
    at a uniformly random pair of distinct steps. The target, read after the last step, is the
    sum of the two marked values. Predicting the constant 1 (the target's mean) scores a mean
    squared error of Var(X1 + X2) = 1/6: the baseline of a model that learned nothing.

    Returns x (n, T, 2) float32 and y (n, 1). Drawn from `generator`, so a seed repeats a batch.
    """
    if n < 1 or T < 2:
        raise ValueError(f"need n >= 1 sequences of length T >= 2 (two distinct markers), got n={n}, T={T}")
    values = torch.rand(n, T, generator=generator)  # (n, T)
    first = torch.randint(0, T, (n,), generator=generator)  # (n,) uniform over the T steps
    second = torch.randint(0, T - 1, (n,), generator=generator)  # uniform over the other T - 1
    second += (second >= first).long()  # shift past `first`: distinct, still uniform
    markers = torch.zeros(n, T)
    rows = torch.arange(n)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    x = torch.stack([values, markers], dim=-1)  # (n, T, 2)
    y = (values * markers).sum(dim=1, keepdim=True)  # (n, 1)
    return x, y
