"""The out-of-kernel checker against a real IPython kernel: what crosses, what cannot, what is caught.

These are the fast tests of course_tools.grading (seconds, one kernel for the module); the
grading-pipeline and robustness tests prove the same through nbgrader's real autograde.
"""

from __future__ import annotations

import math
import queue
import time
from pathlib import Path

import pytest
import torch
from jupyter_client.manager import start_new_kernel

from course_lib.checks import CheckFailed, ForbiddenCall
from course_tools.grading.cells import hidden_lines, visible_part
from course_tools.grading.checker import Checker, _free_names, decode
from course_tools.grading.kernel.link import encode
from course_tools.grading.link_session import KernelControl, LinkSession, LinkTimeout


class Kernel:
    """A real kernel, and the checker's calls into it over the same link session autograde uses."""

    def __init__(self, folder: Path):
        self.km, self.kc = start_new_kernel(kernel_name="python3")
        self.folder, self.sessions = folder, 0

    def run(self, code: str) -> list[dict]:
        msg_id = self.kc.execute(code)
        outputs = []
        while True:
            try:
                msg = self.kc.get_iopub_msg(timeout=60)
            except queue.Empty:
                raise TimeoutError(code[:80]) from None
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind in ("display_data", "execute_result"):
                outputs.append({"output_type": kind, "data": content["data"]})
            elif kind == "stream":
                outputs.append({"output_type": "stream", "name": content["name"], "text": content["text"]})
            elif kind == "error":
                outputs.append(
                    {"output_type": "error", "ename": content["ename"], "evalue": content["evalue"]}
                )
            elif kind == "status" and content["execution_state"] == "idle":
                return outputs

    def control(self) -> KernelControl:
        def replied(msg_id: str) -> bool:
            while self.kc.shell_channel.msg_ready():
                if self.kc.get_shell_msg(timeout=0)["parent_header"].get("msg_id") == msg_id:
                    return True
            return False

        return KernelControl(
            execute=lambda code: self.kc.execute(code, store_history=False, stop_on_error=False),
            replied=replied,
            alive=self.km.is_alive,
            interrupt=self.km.interrupt_kernel,
        )

    def session(self, timeout: float | None = 60) -> LinkSession:
        self.sessions += 1
        return LinkSession(self.control(), self.folder / f"l{self.sessions}", timeout)

    def close(self):
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    k = Kernel(tmp_path_factory.mktemp("link"))
    k.run("import torch, torch.nn.functional as F")
    yield k
    k.close()


@pytest.fixture
def checker(kernel):
    """A checker whose calls share one session, as one test cell's calls do."""
    session = kernel.session()
    yield Checker(session.call)
    session.close()


def define(kernel: Kernel, code: str) -> None:
    errors = [o for o in kernel.run(code) if o["output_type"] == "error"]
    assert not errors, errors


def test_values_cross_as_plain_data_and_back(kernel, checker):
    define(kernel, "def echo(*a, **k):\n    return a, k")
    values = (
        torch.tensor([1.0, math.nan, -math.inf], dtype=torch.float64),
        torch.ones(2, 3, dtype=torch.bfloat16),
        torch.tensor(3, dtype=torch.int64),
        torch.empty(0, 4),
        torch.tensor([True, False]),
        [1, 2.5, "x", None, {"k": (1, 2)}],
        math.inf,
    )
    got_args, got_kwargs = checker.call("echo", values, {"gen": 7})
    assert got_kwargs == {"gen": 7}
    for want, got in zip(values, got_args, strict=True):
        if isinstance(want, torch.Tensor):
            assert type(got) is torch.Tensor and got.dtype == want.dtype and got.shape == want.shape
            assert torch.equal(torch.nan_to_num(got.float()), torch.nan_to_num(want.float()))
        else:
            assert got == want


def test_a_tensor_subclass_or_agreeable_object_arrives_as_plain_numbers(kernel, checker):
    define(
        kernel,
        """
class Agreeable(torch.Tensor):
    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") in ("allclose", "equal", "eq", "__eq__"):
            return True
        return super().__torch_function__(func, types, args, kwargs or {})

class Anything(float):
    def __eq__(self, other):
        return True
    __hash__ = float.__hash__

def sub(x):
    return torch.zeros(3).as_subclass(Agreeable)

def anything(x):
    return Anything(0.0)
""",
    )
    out = checker.call("sub", (torch.ones(3),), {})
    assert type(out) is torch.Tensor and not torch.allclose(out, torch.ones(3))
    value = checker.call("anything", (1,), {})
    assert type(value) is float and value != 1.0


def test_an_unsupported_answer_fails_with_a_reason(kernel, checker):
    define(kernel, "def gives_object(x):\n    return object()")
    with pytest.raises(CheckFailed, match="object"):
        checker.call("gives_object", (1,), {})


def test_errors_and_missing_functions_are_reported(kernel, checker):
    define(
        kernel,
        "def boom(x):\n    raise ValueError('bad shape')\ndef todo(x):\n    raise NotImplementedError()",
    )
    with pytest.raises(CheckFailed, match="ValueError: bad shape"):
        checker.call("boom", (1,), {})
    with pytest.raises(NotImplementedError):
        checker.call("todo", (1,), {})
    with pytest.raises(CheckFailed, match="not defined"):
        checker.call("never_written", (1,), {})


def test_inputs_edited_in_place_do_not_reach_the_grader(kernel, checker):
    define(kernel, "def vandal(x):\n    x.zero_()\n    return x.sum()")
    x = torch.ones(4)
    assert checker.call("vandal", (x,), {}) == 0.0
    assert torch.equal(x, torch.ones(4)), "the grader's copy of the input changed"


def test_parameters_gradients_and_modules_come_back(kernel, checker):
    define(
        kernel,
        """
def step(model, opt, x):
    opt.zero_grad()
    model(x).pow(2).sum().backward()
    opt.step()

def halve_grads(params):
    for p in params:
        p.grad = p.grad / 2
""",
    )
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    reference = torch.nn.Linear(3, 2)
    reference.load_state_dict(model.state_dict())
    ref_opt = torch.optim.SGD(reference.parameters(), lr=0.1, momentum=0.9)
    x = torch.randn(5, 3)
    for _ in range(2):  # the second step needs the momentum buffer of the first
        checker.call("step", (model, opt, x), {})
        ref_opt.zero_grad()
        reference(x).pow(2).sum().backward()
        ref_opt.step()
    for p, q in zip(model.parameters(), reference.parameters(), strict=True):
        assert torch.allclose(p, q) and torch.allclose(p.grad, q.grad)
    params = [torch.nn.Parameter(torch.ones(2))]
    params[0].grad = torch.full((2,), 4.0)
    checker.call("halve_grads", (params,), {})
    assert torch.equal(params[0].grad, torch.full((2,), 2.0))


def test_a_grader_helper_reports_how_it_was_used(kernel, checker):
    define(kernel, "def uses(f, n):\n    return [f(i) for i in range(n)]")
    calls = []

    def helper(i):
        calls.append(i)
        return i * i

    assert checker.call("uses", (helper, 3), {}) == [0, 1, 4]
    assert calls == [0, 1, 2]


@pytest.mark.parametrize(
    "body",
    [
        "return F.cross_entropy(z, y)",
        "return torch._C._nn.cross_entropy_loss(z, y, None, 1, -100, 0.0)",
        "return torch.ops.aten.nll_loss_forward(torch.ops.aten._log_softmax(z, 1, False), y, None, 1, -100)[0]",
        "import importlib\n    return importlib.import_module('torch.nn.functional').cross_entropy(z, y)",
        "return CE(z, y)",
    ],
    ids=["direct", "c-binding", "aten", "importlib", "alias"],
)
def test_a_forbidden_builtin_is_caught_however_it_is_reached(kernel, checker, body):
    define(kernel, f"from torch.nn.functional import cross_entropy as CE\ndef ce(z, y):\n    {body}")
    z, y = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    with (
        pytest.raises(ForbiddenCall, match="cross_entropy"),
        checker.forbid("torch.nn.functional.cross_entropy"),
    ):
        checker.call("ce", (z, y), {})


def test_autograd_is_caught_under_any_name(kernel, checker):
    define(
        kernel,
        "from torch.autograd import grad as g\n"
        "def sig_grad(z):\n"
        "    z = z.clone().requires_grad_(True)\n"
        "    return g(torch.sigmoid(z).sum(), z)[0]",
    )
    with pytest.raises(ForbiddenCall), checker.forbid("torch.autograd.grad", "torch.Tensor.backward"):
        checker.call("sig_grad", (torch.randn(3),), {})
    out = checker.call("sig_grad", (torch.zeros(3),), {})  # outside forbid it is allowed
    assert torch.allclose(out, torch.full((3,), 0.25))


def test_own_code_is_not_mistaken_for_the_builtin(kernel, checker):
    define(
        kernel,
        "def ce_own(z, y):\n"
        "    m = z.max(dim=1, keepdim=True).values\n"
        "    lse = m.squeeze(1) + torch.log(torch.exp(z - m).sum(dim=1))\n"
        "    return (lse - z[torch.arange(z.shape[0]), y]).mean()",
    )
    z, y = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    with checker.forbid("torch.nn.functional.cross_entropy", "torch.logsumexp", "torch.autograd.grad"):
        out = checker.call("ce_own", (z, y), {})
    assert torch.allclose(out, torch.nn.functional.cross_entropy(z, y))


def test_substitutes_stand_in_for_other_parts(kernel, checker):
    define(kernel, "def helper(x):\n    return 'student'\ndef outer(x):\n    return helper(x)")
    with checker.substitute(None, helper=lambda x: "reference"):
        assert checker.call("outer", (1,), {}) == "reference"
    assert checker.call("outer", (1,), {}) == "student"


def test_a_test_cell_runs_here_with_proxies_and_its_verdict_is_kept(kernel, checker):
    define(kernel, "def double(x):\n    return 2 * x")
    checker.run_setup("import torch\nfrom course_lib.checks import check_close, forbid")
    ok = checker.run_test("check_close('double', double(torch.ones(2)), torch.full((2,), 2.0))", "t1")
    assert ok == (True, "", "")
    passed, kind, message = checker.run_test(
        "check_close('double', double(torch.ones(2)), torch.ones(2))", "t2"
    )
    assert not passed and kind == "CheckFailed" and "double" in message


def test_free_names_are_the_students_functions():
    import ast

    tree = ast.parse(
        "def ref(x):\n    return x\ny = ref(1)\nout = answer(y, key=lambda k: k)\nfor i in range(2):\n    i"
    )
    assert _free_names(tree) == {"answer", "range"}


def test_hidden_regions_are_split_off():
    source = "a = 1\n### BEGIN HIDDEN TESTS\nsecret_value_check(12345678901)\n### END HIDDEN TESTS\nb = 2"
    assert visible_part(source) == "a = 1\nb = 2"
    assert hidden_lines(source) == ["secret_value_check(12345678901)"]


def test_encode_decode_round_trip_without_a_kernel():
    value = {"W": torch.randn(2, 2), "n": 3, "t": (1.5, None)}
    back = decode(encode(value))
    assert torch.equal(back["W"], value["W"]) and back["n"] == 3 and back["t"] == (1.5, None)


# ---------------------------------------------------------------- the link session's failure modes


def test_a_call_past_the_timeout_is_interrupted_and_the_kernel_goes_on(kernel):
    define(kernel, "def spins(x):\n    while True:\n        pass")
    session = kernel.session(timeout=1)
    started = time.monotonic()
    with pytest.raises(LinkTimeout, match="spins ran longer than 1 s and was interrupted"):
        session.call("spins", _payload(1))
    session.close()
    assert session.timed_out and not session.stuck
    assert time.monotonic() - started < 10
    checker = Checker(kernel.session().call)  # the next cell's calls are answered as before
    define(kernel, "def triple(x):\n    return 3 * x")
    assert checker.call("triple", (2,), {}) == 6


def test_a_replaced_link_fails_the_call_at_once(kernel):
    define(kernel, "import course_tools.grading.kernel.link as L\n_saved, L.serve = L.serve, lambda *a: None")
    try:
        started = time.monotonic()
        with pytest.raises(CheckFailed, match="the grading link did not start"):
            kernel.session().call("anything", _payload())
        assert time.monotonic() - started < 5
    finally:
        define(kernel, "L.serve = _saved")


def test_what_a_call_prints_stays_in_the_kernel(kernel, checker):
    define(
        kernel,
        "def noisy(x):\n    print('spam ' * 1000)\n    import sys; sys.stderr.write('err')\n    return x",
    )
    assert checker.call("noisy", (5,), {}) == 5


def test_a_kernel_dying_in_a_call_is_a_dead_kernel(tmp_path):
    from nbclient.exceptions import DeadKernelError

    k = Kernel(tmp_path)
    try:
        define(k, "def dies(x):\n    import os\n    os._exit(3)")
        with pytest.raises(DeadKernelError):
            Checker(k.session().call).call("dies", (1,), {})
    finally:
        k.close()


def test_a_kernel_that_ignores_the_interrupt_is_reported_stuck(tmp_path):
    k = Kernel(tmp_path)
    try:
        define(k, "def ready(x):\n    return x")
        define(
            k,
            "def stubborn(x):\n    import signal\n    signal.signal(signal.SIGINT, signal.SIG_IGN)\n    while True:\n        pass",
        )
        warm_up = k.session(timeout=120)  # the link's first call imports what it needs
        assert warm_up.call("ready", _payload(1))["ok"]
        warm_up.close()
        session = k.session(timeout=2)
        with pytest.raises(LinkTimeout):
            session.call("stubborn", _payload(1))
        assert session.timed_out and session.stuck
    finally:
        k.close()


def _payload(*args) -> str:
    import base64

    import cloudpickle

    return base64.b64encode(cloudpickle.dumps({"args": args, "kwargs": {}})).decode()
