"""course_lib: the library behind the course "Gradient Problems in Deep Learning".

Finished, tested tools that chapters and exercises import: seeding, data sets
that ship offline, model factories, one training loop, plots, and the checking
helpers exercise tests call. It holds no answer to any graded question.
"""

from .checks import CheckFailed, check_close, check_finite, check_shape, check_true
from .data import DigitsSplit, batches, load_digits
from .models import MLPConfig, count_parameters, make_mlp
from .seeding import default_device, seed_everything
from .training import Callback, History, evaluate, global_grad_norm, train

__version__ = "0.1.0"

__all__ = [
    "Callback",
    "CheckFailed",
    "DigitsSplit",
    "History",
    "MLPConfig",
    "batches",
    "check_close",
    "check_finite",
    "check_shape",
    "check_true",
    "count_parameters",
    "default_device",
    "evaluate",
    "global_grad_norm",
    "load_digits",
    "make_mlp",
    "seed_everything",
    "train",
]
