"""Numbers from a chapter's code into its prose, the MyST-NB `glue` way, without its cost.

A chapter computes a number and the sentence that reports it pastes it at build time:

    glue("ch03_shrink", shrink)                # in a code cell
    ... a factor {glue:text}`ch03_shrink:.1f` per layer ...   # in the prose

This is MyST-NB's protocol (`myst_nb.glue`, display=False): the value's display data are
published with the mime prefix "application/papermill.record/" and the key in the
output's "scrapbook" metadata, where the book build finds them. Two differences:

- `myst_nb.glue` imports nbformat and jsonschema on its first call, which compiles dozens
  of grammars (seconds per chapter, every build); this module needs only IPython.
- NumPy scalars and 0-d tensors are converted to Python numbers first. MyST-NB formats a
  pasted value by parsing its text: "np.float64(0.5)" cannot be formatted with `:.2f`, and
  the number silently drops out of its sentence. Arrays and larger tensors are refused.
"""

from __future__ import annotations

import numbers

import numpy as np
import torch
from IPython.core.formatters import format_display_data
from IPython.display import display

GLUE_PREFIX = "application/papermill.record/"  # MyST-NB 1.x (myst_nb.ext.glue.GLUE_PREFIX)


def plain(value: object) -> object:
    """value with NumPy scalars and 0-d tensors made Python numbers; strings unchanged."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise TypeError(f"glue a number, not a tensor of shape {tuple(value.shape)}")
        return value.item()
    if isinstance(value, np.ndarray):
        if value.size != 1:
            raise TypeError(f"glue a number, not an array of shape {value.shape}")
        return value.item()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, str | numbers.Number):
        return value
    raise TypeError(f"glue numbers or strings, got {type(value).__name__}")


def glue(name: str, value: object) -> None:
    """Publish `value` under `name` for the prose's {glue:text}`name:fmt`, showing nothing."""
    bundle, metadata = format_display_data(plain(value))
    metadata["scrapbook"] = dict(name=name, mime_prefix=GLUE_PREFIX)
    display({GLUE_PREFIX + k: v for k, v in bundle.items()}, raw=True, metadata=metadata)
