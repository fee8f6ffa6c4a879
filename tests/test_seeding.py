"""course_lib.seeding: one call makes every generator, and a short training run, repeat exactly."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch
from torch import nn

from course_lib.seeding import default_device, seed_everything


@pytest.fixture(autouse=True)
def _restore_torch_state(monkeypatch):
    """seed_everything changes process-wide settings; put them back after each test."""
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    monkeypatch.delenv("PYTHONHASHSEED", raising=False)
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)


def _draws(gen: torch.Generator) -> tuple:
    return (
        random.random(),
        random.randint(0, 10**9),
        np.random.rand(5),
        torch.rand(5),
        torch.randn(3, 3),
        torch.randperm(20, generator=gen),
    )


def _short_run(seed: int) -> list[torch.Tensor]:
    gen = seed_everything(seed)
    model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Dropout(0.2), nn.Linear(16, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = torch.randn(40, 6)
    y = torch.randint(0, 3, (40,))
    for _ in range(5):
        idx = torch.randperm(40, generator=gen)[:16]
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return [p.detach().clone() for p in model.parameters()]


def test_same_seed_same_draws():
    a = _draws(seed_everything(123))
    b = _draws(seed_everything(123))
    assert a[0] == b[0] and a[1] == b[1]
    np.testing.assert_array_equal(a[2], b[2])
    for ta, tb in zip(a[3:], b[3:], strict=True):
        assert torch.equal(ta, tb)


def test_different_seeds_differ():
    a = _draws(seed_everything(1))
    b = _draws(seed_everything(2))
    assert a[0] != b[0]
    assert not np.array_equal(a[2], b[2])
    for ta, tb in zip(a[3:], b[3:], strict=True):
        assert not torch.equal(ta, tb)


def test_short_training_run_is_bit_identical():
    first, second = _short_run(7), _short_run(7)
    assert all(torch.equal(p, q) for p, q in zip(first, second, strict=True))
    other = _short_run(8)
    assert not all(torch.equal(p, q) for p, q in zip(first, other, strict=True))


def test_returned_generator_is_seeded():
    gen = seed_everything(42)
    assert isinstance(gen, torch.Generator)
    assert gen.initial_seed() == 42
    reference = torch.Generator().manual_seed(42)
    assert torch.equal(torch.randperm(50, generator=gen), torch.randperm(50, generator=reference))


def test_large_seed_accepted():
    # NumPy only takes seeds below 2**32; the library reduces it, torch takes it whole.
    gen = seed_everything(2**40 + 3)
    assert gen.initial_seed() == 2**40 + 3


@pytest.mark.parametrize("bad", [-1, 1.5, "3", None])
def test_invalid_seed_raises(bad):
    with pytest.raises(ValueError, match="seed"):
        seed_everything(bad)


def test_thread_count_applied():
    seed_everything(0, threads=2)
    assert torch.get_num_threads() == 2
    seed_everything(0, threads=1)
    assert torch.get_num_threads() == 1
    torch.set_num_threads(2)
    seed_everything(0, threads=None)  # None leaves the setting alone
    assert torch.get_num_threads() == 2


def test_deterministic_flag_and_hash_seed():
    seed_everything(5, deterministic=True)
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.is_deterministic_algorithms_warn_only_enabled()
    assert os.environ["PYTHONHASHSEED"] == "5"
    seed_everything(5, deterministic=False)
    assert not torch.are_deterministic_algorithms_enabled()


def test_default_device():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert default_device() == torch.device(expected)
