"""course_lib: the library behind the course "Gradient Problems in Deep Learning".

Finished, tested tools that chapters and exercises import: seeding, data sets
that ship offline, model factories, one training loop, gradient diagnostics (monitor and
diagnosis; plots and widgets in their own modules), plots, and the checking
helpers exercise tests call. It holds no answer to any graded question.
"""

from .checks import CheckFailed, check_close, check_finite, check_shape, check_true
from .data import DigitsSplit, batches, load_digits
from .diagnosis import DiagnosisConfig, Finding, diagnose, report
from .models import MLPConfig, count_parameters, make_mlp
from .monitor import GradientMonitor, MonitorConfig, MonitorRecord
from .seeding import default_device, seed_everything
from .training import Callback, History, evaluate, global_grad_norm, train

__version__ = "0.1.0"

__all__ = [
    "Callback",
    "CheckFailed",
    "DiagnosisConfig",
    "DigitsSplit",
    "Finding",
    "GradientMonitor",
    "History",
    "MLPConfig",
    "MonitorConfig",
    "MonitorRecord",
    "batches",
    "check_close",
    "check_finite",
    "check_shape",
    "check_true",
    "count_parameters",
    "default_device",
    "diagnose",
    "evaluate",
    "global_grad_norm",
    "load_digits",
    "make_mlp",
    "report",
    "seed_everything",
    "train",
]
