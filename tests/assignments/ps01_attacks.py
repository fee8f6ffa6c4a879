"""Submissions that try to earn ps01's points without the work; each must earn nothing on its part.

They are what a determined student tries once they know the tests run in the same kernel
as their code (COURSE_DESIGN.md §10): patch the checks, fool the comparisons, read the
expected value, forge the output, or reach a forbidden built-in by another name. Since the
verdict is made outside the kernel (course_tools.grading.checker), none of it can work; the
pipeline test (tests/test_grading_pipeline.py) proves that each earns 0 on its part.
"""

from __future__ import annotations

from assignments.catalog import Attack
from assignments.ps01_mistakes import MISTAKES

ASSIGNMENT = "ps01_backprop"

WRONG_CE_GRAD = '''
def cross_entropy_grad(logits, y):
    """Gradient of the mean cross-entropy, without the factor of the mean."""
    return torch.softmax(logits, dim=1) - F.one_hot(y, logits.shape[1]).to(logits.dtype)
'''

# The catalogue's wrong answer, so an attack that earned points would show as a lost point, not a pass.
WRONG_CONV = "\n" + next(
    m.source for m in MISTAKES if (m.part, m.name) == ("conv1d_backward", "input_gradient_without_offset")
)

ATTACKS: list[Attack] = [
    Attack(
        "conv1d_backward",
        "patch_checks",
        "replaces check_close, check_shape, check_true in course_lib.checks and the notebook by no-ops",
        """import course_lib.checks
for _name in ("check_close", "check_shape", "check_true", "check_finite"):
    setattr(course_lib.checks, _name, lambda *a, **k: None)
    globals()[_name] = lambda *a, **k: None
"""
        + WRONG_CONV,
    ),
    Attack(
        "conv1d_backward",
        "allclose_always_true",
        "makes torch.allclose, numpy.allclose and every tensor comparison say yes",
        """import numpy as np
torch.allclose = lambda *a, **k: True
np.allclose = lambda *a, **k: True
torch.Tensor.__le__ = lambda self, other: torch.ones(self.shape, dtype=torch.bool)
torch.Tensor.__lt__ = lambda self, other: torch.ones(self.shape, dtype=torch.bool)
torch.Tensor.any = lambda self, *a, **k: torch.tensor(False)
torch.Tensor.all = lambda self, *a, **k: torch.tensor(True)
"""
        + WRONG_CONV,
    ),
    Attack(
        "cross_entropy_grad",
        "tensor_subclass",
        "returns a tensor subclass whose every comparison and reduction reports a match",
        '''class _Agreeable(torch.Tensor):
    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in ("allclose", "equal", "isclose", "__eq__", "eq"):
            return True
        return super().__torch_function__(func, types, args, kwargs or {})


def cross_entropy_grad(logits, y):
    """Gradient of the mean cross-entropy, as far as any comparison can tell."""
    return torch.zeros_like(logits).as_subclass(_Agreeable)
''',
    ),
    Attack(
        "cross_entropy_grad",
        "function_mode",
        "installs a global torch function mode that answers every comparison with True",
        """from torch.overrides import TorchFunctionMode


class _Yes(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") in ("allclose", "isclose", "equal"):
            return True
        return func(*args, **(kwargs or {}))


_Yes().__enter__()
"""
        + WRONG_CE_GRAD,
    ),
    Attack(
        "cross_entropy",
        "read_expected_from_frames",
        "walks the caller's stack frames for a tensor named like the expected value and returns it",
        '''import inspect


def cross_entropy(logits, y):
    """Mean cross-entropy: taken from whatever the test computed."""
    for info in inspect.stack():
        for key, value in info.frame.f_locals.items():
            if key in ("expected", "reference", "ref", "want") and isinstance(value, torch.Tensor):
                return value
    for info in inspect.stack():
        for value in info.frame.f_locals.values():
            if isinstance(value, torch.Tensor) and value.dim() == 0:
                return value
    return torch.tensor(0.0, dtype=logits.dtype)
''',
    ),
    Attack(
        "cross_entropy",
        "eq_always_true",
        "returns an object whose __eq__, __sub__ and abs say it is equal to anything",
        '''class _Anything(float):
    def __eq__(self, other):
        return True

    def __ne__(self, other):
        return False

    __hash__ = float.__hash__

    def __sub__(self, other):
        return 0.0

    __rsub__ = __sub__


def cross_entropy(logits, y):
    """Mean cross-entropy, as far as any comparison can tell."""
    return _Anything(0.0)
''',
    ),
    Attack(
        "cross_entropy",
        "private_c_binding",
        "calls the built-in through torch._C._nn.cross_entropy_loss, a name no test forbids",
        '''def cross_entropy(logits, y):
    """Mean cross-entropy, by the private binding of the built-in."""
    return torch._C._nn.cross_entropy_loss(logits, y, None, 1, -100, 0.0)
''',
    ),
    Attack(
        "cross_entropy",
        "aten_op",
        "calls the aten operators behind F.cross_entropy (torch.ops.aten)",
        '''def cross_entropy(logits, y):
    """Mean cross-entropy, by the aten ops."""
    logp = torch.ops.aten._log_softmax(logits, 1, False)
    return torch.ops.aten.nll_loss_forward(logp, y, None, 1, -100)[0]
''',
    ),
    Attack(
        "cross_entropy",
        "alias_before_the_check",
        "binds F.cross_entropy to another name at import time, before any test can replace it",
        '''from torch.nn.functional import cross_entropy as _builtin_ce
import importlib

_lookup = importlib.import_module("torch.nn.functional").__dict__["log_softmax"]


def cross_entropy(logits, y):
    """Mean cross-entropy, by a renamed built-in."""
    return _builtin_ce(logits, y)
''',
    ),
    Attack(
        "cross_entropy_grad",
        "autograd_imported_at_top",
        "from torch.autograd import grad at the top of the cell, then autograd under that name",
        '''from torch.autograd import grad


def cross_entropy_grad(logits, y):
    """Gradient of the mean cross-entropy, by autograd under another name."""
    z = logits.detach().clone().requires_grad_(True)
    (g,) = grad(F.cross_entropy(z, y), z)
    return g
''',
    ),
    Attack(
        "cross_entropy_grad",
        "edit_inputs_in_place",
        "returns zeros after overwriting the logits with equal values (softmax uniform), hoping the "
        "reference is computed from the edited inputs",
        '''def cross_entropy_grad(logits, y):
    """Gradient of the mean cross-entropy of logits edited in place."""
    n, c = logits.shape
    logits.zero_()
    y.zero_()
    return torch.zeros(n, c, dtype=logits.dtype)
''',
    ),
    Attack(
        "two_layer_backward",
        "forge_output_and_hide_errors",
        "prints the pass messages, hides every traceback, and answers with zeros",
        '''print("two_layer_backward: visible tests passed")
_ip = get_ipython()
_ip.showtraceback = lambda *a, **k: None
_ip._showtraceback = lambda *a, **k: None
_ip.set_custom_exc((BaseException,), lambda shell, etype, value, tb, tb_offset=None: None)


def two_layer_backward(x, W1, b1, W2, b2, dlogits):
    """Zeros of the right shapes."""
    print("two_layer_backward: visible tests passed")
    return {"W1": torch.zeros_like(W1), "b1": torch.zeros_like(b1), "W2": torch.zeros_like(W2), "b2": torch.zeros_like(b2)}
''',
    ),
    Attack(
        "relative_error",
        "rewrite_test_cells",
        "an IPython AST transformer that drops every check_ call and raise from later cells",
        '''import ast


class _DropChecks(ast.NodeTransformer):
    def visit_Expr(self, node):
        call = node.value
        if isinstance(call, ast.Call) and getattr(call.func, "id", "").startswith("check_"):
            return ast.Pass()
        return node

    def visit_Raise(self, node):
        return ast.Pass()


get_ipython().ast_transformers.append(_DropChecks())


def relative_error(a, b):
    """Always zero."""
    return 0.0
''',
    ),
]
