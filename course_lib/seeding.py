"""Reproducibility: one call that seeds every generator and fixes thread counts.

Same seed, same machine, same thread count -> bit-identical results. Thread
count matters because reductions on several threads can add in a different
order; the course fixes it so figures in the book do not drift between builds.
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch


def seed_everything(seed: int = 0, *, threads: int | None = 1, deterministic: bool = True) -> torch.Generator:
    """Seed Python, NumPy and PyTorch (CPU and CUDA); return a torch.Generator seeded with `seed`.

    threads: torch intra-op threads (None leaves the current setting).
    deterministic: ask PyTorch for deterministic kernels where they exist (warn-only
    so that an operation without one still runs).
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device
    os.environ["PYTHONHASHSEED"] = str(seed)
    if threads is not None:
        torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    if torch.cuda.is_available():
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = deterministic
    gen = torch.Generator()
    gen.manual_seed(seed)
    return gen


def default_device() -> torch.device:
    """CUDA when present, else CPU. Library code never assumes one or the other."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
