"""course_lib.diagnosis: the six constructed cases are each named correctly and nothing else is
flagged; thresholds, attribution and bad input behave as documented."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from course_lib.data import load_digits
from course_lib.diagnosis import (
    CASES,
    KINDS,
    DiagnosisConfig,
    Finding,
    build_case,
    diagnose,
    report,
    run_case,
)
from course_lib.models import make_mlp
from course_lib.monitor import LAYER_STATS, PARAM_STATS, GradientMonitor, LayerInfo, MonitorRecord
from course_lib.recurrent import make_rnn, scale_recurrent_
from course_lib.training import train


@pytest.fixture(scope="module")
def case_records() -> dict[str, MonitorRecord]:
    return {name: run_case(name) for name in CASES}


@pytest.mark.parametrize("name", list(CASES))
def test_each_constructed_case_is_named_and_nothing_else_is_flagged(case_records, name):
    findings = diagnose(case_records[name])
    kinds = [f.kind for f in findings]
    assert kinds == [CASES[name].expected], (
        f"{name}: expected only {CASES[name].expected!r}, got {report(findings)}"
    )
    f = findings[0]
    assert f.message and f.numbers, "a finding carries its numbers and a one-line message"
    assert f.kind in f.message


def test_case_numbers_match_the_construction(case_records):
    vanish = diagnose(case_records["sigmoid_deep"])[0]
    assert vanish.numbers["ratio"] < 1e-6 and vanish.severity == "critical"
    assert vanish.layer == "hidden1.linear"
    assert "first-layer gradient" in vanish.message and "of the last layer's" in vanish.message
    explode = diagnose(case_records["linear_scale_1.5"])[0]
    assert explode.numbers["ratio"] == pytest.approx(1.5**19, rel=0.05), "orthogonal × 1.5 over 19 layer gaps"
    rnn = diagnose(case_records["rnn_radius_1.2"])[0]
    assert rnn.layer == "cells.0" and "through time" in rnn.message
    assert rnn.numbers["time_steps"] == 30
    assert rnn.numbers["per_step_factor"] == pytest.approx(1.2, abs=0.03), "the spectral radius, per step"
    dead = diagnose(case_records["relu_negative_bias"])[0]
    assert dead.numbers["fraction"] > 0.9 and "grad_ratio" in dead.numbers, (
        "the vanishing it causes is attached"
    )
    sat = diagnose(case_records["tanh_large_init"])[0]
    assert sat.numbers["fraction"] > 0.5 and sat.numbers["layers_affected"] == 4


def test_cases_are_rebuilt_identically():
    model_a, x_a, y_a = build_case("relu_he", seed=3)
    model_b, x_b, y_b = build_case("relu_he", seed=3)
    torch.testing.assert_close(x_a, x_b)
    torch.testing.assert_close(model_a(x_a), model_b(x_b))
    with pytest.raises(KeyError, match="unknown case"):
        build_case("nope")


@pytest.mark.parametrize("seed", [1, 2])
def test_cases_hold_for_other_seeds(seed):
    for name, case in CASES.items():
        kinds = [f.kind for f in diagnose(run_case(name, seed=seed))]
        assert kinds == [case.expected], f"{name}, seed {seed}: {kinds}"


def test_healthy_training_run_is_healthy():
    torch.manual_seed(0)
    data = load_digits()
    model = make_mlp(hidden=(64,) * 8, activation="relu", init="he")
    with GradientMonitor(model) as mon:
        train(model, data.train, lr=0.1, epochs=2, max_steps=30, callbacks=[mon], progress=False)
    findings = diagnose(mon)  # a monitor is accepted too
    assert [f.kind for f in findings] == ["healthy"], report(findings)
    assert 3e-5 < findings[0].numbers["median_update_ratio"] < 3e-2


@pytest.mark.parametrize(("lr", "word"), [(1e-5, "too low"), (3.0, "too high")])
def test_update_ratio_far_from_1e_3_is_flagged(lr, word):
    torch.manual_seed(0)
    data = load_digits()
    model = make_mlp(hidden=(32,) * 3, activation="tanh", init="xavier")
    with GradientMonitor(model) as mon:
        train(model, data.train, lr=lr, epochs=1, max_steps=8, callbacks=[mon], progress=False)
    upd = [f for f in diagnose(mon) if f.kind == "update_ratio"]
    assert upd and word in upd[0].message, report(diagnose(mon))


def test_rnn_with_radius_below_one_vanishes_through_time():
    torch.manual_seed(0)
    model = make_rnn("rnn", input_size=1, hidden_size=32, output_size=2)
    scale_recurrent_(model, 0.8, orthogonal=True)
    x = 0.01 * torch.randn(32, 40, 1)
    with GradientMonitor(model) as mon:
        torch.nn.functional.cross_entropy(model(x), (x.sum((1, 2)) > 0).long()).backward()
        mon.record_step()
    (f,) = diagnose(mon)
    assert f.kind == "vanishing" and "through time" in f.message
    assert f.numbers["per_step_factor"] == pytest.approx(0.8, abs=0.05)


# ---- hand-made records: thresholds and edge cases ---------------------------------------------


def _record(out_grad: list[float], *, dead=None, sat=None, update=None, steps: int = 4, nonfinite_at=None):
    """A record of a plain MLP-like stack with chosen statistics (for threshold tests)."""
    n = len(out_grad)
    infos = [LayerInfo(f"l{i}", "linear", "Linear", None, False, (f"l{i}.weight",)) for i in range(n)]
    if dead is not None:
        infos.append(LayerInfo("relu", "activation", "ReLU", None, True, ()))
    if sat is not None:
        infos.append(LayerInfo("tanh", "activation", "Tanh", (-1.0, 1.0), False, ()))
    rec = MonitorRecord(infos, [f"l{i}.weight" for i in range(n)])
    rec.order = list(range(len(infos)))
    for s in range(steps):
        lay = np.full((len(infos), len(LAYER_STATS)), np.nan)
        lay[:, LAYER_STATS.index("calls")] = 1
        lay[:, LAYER_STATS.index("nonfinite")] = 0
        lay[:n, LAYER_STATS.index("out_grad_norm")] = out_grad
        lay[:n, LAYER_STATS.index("grad_norm")] = 1.0  # every weighted layer received a gradient
        if dead is not None:
            lay[n, LAYER_STATS.index("dead")] = dead
        if sat is not None:
            lay[-1, LAYER_STATS.index("saturated")] = sat
        if update is not None:
            lay[:n, LAYER_STATS.index("update_ratio")] = update
        par = np.full((n, len(PARAM_STATS)), 1.0)
        par[:, PARAM_STATS.index("nonfinite")] = 0
        if nonfinite_at is not None and s >= nonfinite_at:
            lay[1, LAYER_STATS.index("nonfinite")] = 2  # output gradient
        rec._append(lay, par, 1.0, s)
    return rec


def test_thresholds_are_the_configured_ones():
    assert [f.kind for f in diagnose(_record([2e-3, 1.0]))] == ["healthy"]
    assert [f.kind for f in diagnose(_record([5e-4, 1.0]))] == ["vanishing"]
    assert [f.kind for f in diagnose(_record([150.0, 1.0]))] == ["exploding"]
    assert [f.kind for f in diagnose(_record([50.0, 1.0]))] == ["healthy"]
    loose = DiagnosisConfig(vanishing_ratio=1e-12)
    assert [f.kind for f in diagnose(_record([5e-4, 1.0]), loose)] == ["healthy"]
    assert diagnose(_record([1e-7, 1.0]))[0].severity == "critical"  # beyond the threshold squared


def test_attribution_to_dead_units_needs_a_strong_cause():
    weak = diagnose(_record([1e-5, 1.0], dead=0.6))  # one of one ReLU layers: strong (half or more)
    assert [f.kind for f in weak] == ["dead"]
    both = diagnose(_record([1e-5, 1.0], dead=0.3))
    assert sorted(f.kind for f in both) == ["vanishing"], "30% dead is below the threshold"


def test_update_ratio_band():
    assert [f.kind for f in diagnose(_record([1.0, 1.0], update=1e-3))] == ["healthy"]
    assert "too high" in diagnose(_record([1.0, 1.0], update=0.5))[0].message
    assert "too low" in diagnose(_record([1.0, 1.0], update=1e-6))[0].message
    assert diagnose(_record([1.0, 1.0], update=5.0))[0].severity == "critical"


def test_non_finite_is_reported_with_where_and_when():
    findings = diagnose(_record([1.0, 1.0], steps=6, nonfinite_at=4))
    f = findings[0]
    assert f.kind == "nonfinite" and f.severity == "critical"
    assert f.numbers["step"] == 4 and f.layer == "l1"
    assert "first appeared in the gradient at the output of l1 (Linear)" in f.message


def test_growth_over_training_is_exploding():
    rec = _record([1.0, 1.0], steps=8)
    rec._par[5, :, PARAM_STATS.index("grad_norm")] = 1e3
    (f,) = diagnose(rec)
    assert f.kind == "exploding" and "over training" in f.message and f.numbers["step"] == 5


def test_last_steps_window():
    rec = _record([1.0, 1.0], steps=8)
    rec._lay[:5, 0, LAYER_STATS.index("out_grad_norm")] = 1e-6  # vanishing in the first 5 steps only
    assert [f.kind for f in diagnose(rec)] == ["vanishing"]  # the median over all 8 steps
    assert [f.kind for f in diagnose(rec, DiagnosisConfig(last_steps=3))] == ["healthy"]


def test_bad_input():
    with pytest.raises(ValueError, match="empty"):
        diagnose(MonitorRecord([LayerInfo("a", "linear", "Linear", None, False, ())], []))
    with pytest.raises(TypeError, match="MonitorRecord"):
        diagnose({"not": "a record"})  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        DiagnosisConfig(vanishing_ratio=2.0)
    with pytest.raises(ValueError):
        DiagnosisConfig(dead_fraction=0.0)
    with pytest.raises(AssertionError, match="unknown finding kind"):
        Finding("weird", None, "info")
    assert set(KINDS) >= {c.expected for c in CASES.values()}
    f = Finding("healthy", None, "info", {"x": 1.0}, "healthy: fine")
    assert str(f) == "[info] healthy: fine" and not math.isnan(f.numbers["x"])


# ---- situations users found (issue 14): each failed on the landed code ---------------------------


class MyLinear(torch.nn.Module):
    """A user's own layer holding its weight and bias."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(n_out, n_in) / math.sqrt(n_in))
        self.bias = torch.nn.Parameter(torch.zeros(n_out))

    def forward(self, x):
        return x @ self.weight.T + self.bias


def _sigmoid_stack(depth: int = 10) -> torch.nn.Sequential:
    torch.manual_seed(0)
    layers = [torch.nn.Linear(64, 64), torch.nn.Sigmoid()]
    for _ in range(depth - 1):
        layers += [torch.nn.Linear(64, 64), torch.nn.Sigmoid()]
    return torch.nn.Sequential(*layers, torch.nn.Linear(64, 10))


class _UnusedHead(torch.nn.Module):
    def __init__(self, body):
        super().__init__()
        self.body, self.aux = body, torch.nn.Linear(10, 10)  # aux is never called

    def forward(self, x):
        return self.body(x)


class _FunctionalLast(torch.nn.Module):
    """The parent applies its last Linear functionally: the submodule is never called."""

    def __init__(self, body):
        super().__init__()
        self.body, self.last = body, torch.nn.Linear(10, 10)

    def forward(self, x):
        return F.linear(self.body(x), self.last.weight, self.last.bias)


def _frozen_first(body):
    body[0].requires_grad_(False)
    return body


def _at_init(model, steps: int = 3) -> MonitorRecord:
    x, y = load_digits().train
    with GradientMonitor(model) as mon:
        for k in range(steps):
            model.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x[64 * k : 64 * (k + 1)]), y[64 * k : 64 * (k + 1)])
            loss.backward()
            mon.record_step(loss)
    return mon.record


def _trained(model, steps: int = 10, lr: float = 0.05, loss_fn=None):
    data = load_digits()
    with GradientMonitor(model) as mon:
        hist = train(
            model,
            data.train,
            lr=lr,
            epochs=3,
            max_steps=steps,
            loss_fn=loss_fn,
            callbacks=[mon],
            generator=torch.Generator().manual_seed(0),
            progress=False,
        )
    return hist, mon.record


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_a_loss_that_turns_non_finite_inside_the_loss_function_is_named_at_its_step(bad):
    calls = []

    def loss_fn(logits, y):  # finite logits; the loss itself breaks at the fourth call
        calls.append(1)
        ce = F.cross_entropy(logits, y)
        return ce * bad if len(calls) == 4 else ce

    torch.manual_seed(0)
    hist, rec = _trained(make_mlp(hidden=(32, 32), init="he"), loss_fn=loss_fn)
    assert hist.stopped_at_step == 3
    assert rec.n_steps == 4 and (math.isnan(rec.loss[-1]) if math.isnan(bad) else rec.loss[-1] == bad)
    findings = diagnose(rec)
    assert [f.kind for f in findings] == ["nonfinite"], report(findings)
    f = findings[0]
    assert f.numbers["step"] == 3 and f.layer is None
    assert "first appeared in the loss" in f.message and "finite model outputs" in f.message


def test_a_nan_loss_after_backward_is_born_in_the_loss_not_in_the_first_layer():
    torch.manual_seed(0)
    model = make_mlp(hidden=(16, 16), init="he")
    x, y = load_digits().train
    with GradientMonitor(model) as mon:
        loss = F.cross_entropy(model(x[:32]), y[:32]) * torch.log(torch.zeros(()))  # -inf loss
        loss.backward()  # every gradient is now NaN or inf, from the last layer back to the first
        mon.record_step(loss)
    (f,) = diagnose(mon)
    assert f.kind == "nonfinite" and f.layer is None and "in the loss" in f.message, f.message
    assert "hidden1" not in f.message


def test_non_finite_values_are_named_where_they_first_appeared():
    torch.manual_seed(0)

    class Log(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(16))

        def forward(self, x):
            return torch.log(x) * self.scale  # NaN for negative inputs

    model = torch.nn.Sequential(torch.nn.Linear(64, 16), Log(), torch.nn.Linear(16, 10))
    (f,) = diagnose(_at_init(model, steps=1))
    assert f.kind == "nonfinite" and f.layer == "1", f.message
    assert "the output of Sequential.1 (Log)" in f.message
    model = make_mlp(hidden=(16, 16))
    x, y = load_digits().train
    x = x[:32].clone()
    x[3, 5] = math.nan
    with GradientMonitor(model) as mon:
        F.cross_entropy(model(x), y[:32]).backward()
        mon.record_step()
    (f,) = diagnose(mon)
    assert f.kind == "nonfinite" and "the model's input" in f.message, f.message
    model = make_mlp(hidden=(16, 16))
    with torch.no_grad():
        model.hidden2.linear.weight[0, 0] = math.inf  # as a diverged update leaves it
    (f,) = diagnose(_at_init(model, steps=1))
    assert f.kind == "nonfinite" and f.layer == "hidden2.linear", f.message
    assert "the parameters of hidden2.linear (Linear)" in f.message


def test_a_forward_pass_without_backward_is_reported_as_no_gradient():
    torch.manual_seed(0)
    model = make_mlp(hidden=(16, 16), init="he")
    x, y = load_digits().train
    with GradientMonitor(model) as mon:
        F.cross_entropy(model(x[:32]), y[:32]).backward()
        mon.record_step()
        model(x[32:64])  # forgot loss.backward(); .grad still holds the last step's gradients
        mon.record_step()
        model(x[64:96])  # a forward pass, and the record read before any backward
    rec = mon.record
    findings = diagnose(rec)
    assert [f.kind for f in findings] == ["no_gradient"], report(findings)
    assert rec.n_steps == 3 and rec.step_values("backward").tolist() == [1.0, 0.0, 0.0]
    assert np.isnan(rec.param_matrix("grad_norm")[:, 1]).all(), "stale gradients are not recorded as new"
    assert (
        findings[0].numbers["steps_without_gradient"] == 2
        and "no gradient was recorded" in findings[0].message
    )
    only_forward = make_mlp(hidden=(16,))
    with GradientMonitor(only_forward) as mon:
        only_forward(x[:8])
    assert [f.kind for f in diagnose(mon)] == ["no_gradient"]


WITHOUT_GRADIENT = {
    "unused head": lambda: _UnusedHead(_sigmoid_stack()),
    "frozen first layer": lambda: _frozen_first(_sigmoid_stack()),
    "submodule used functionally": lambda: _FunctionalLast(_sigmoid_stack()),
}


@pytest.mark.parametrize("case", list(WITHOUT_GRADIENT))
def test_parameters_without_gradient_do_not_switch_off_the_flow_check(case):
    findings = diagnose(_at_init(WITHOUT_GRADIENT[case]()))
    assert [f.kind for f in findings] == ["vanishing"], f"{case}: {report(findings)}"
    assert findings[0].numbers["ratio"] < 1e-6


@pytest.mark.parametrize("case", list(WITHOUT_GRADIENT))
def test_parameters_without_gradient_are_not_told_learning_rate_too_low(case):
    torch.manual_seed(0)
    body = make_mlp(hidden=(32, 32, 32), init="he")
    build = {
        "unused head": _UnusedHead,
        "frozen first layer": lambda b: (b.hidden1.requires_grad_(False), b)[1],
        "submodule used functionally": _FunctionalLast,
    }[case]
    _, rec = _trained(build(body))
    findings = diagnose(rec)
    assert [f.kind for f in findings] == ["healthy"], f"{case}: {report(findings)}"
    if case != "frozen first layer":
        name = "aux" if case == "unused head" else "last"
        assert any(label.startswith(name) for label in findings.notes), findings.notes


def test_custom_layers_take_part_in_every_check():
    torch.manual_seed(0)
    layers = [MyLinear(64, 64), torch.nn.Sigmoid()]
    for _ in range(9):
        layers += [MyLinear(64, 64), torch.nn.Sigmoid()]
    deep = torch.nn.Sequential(*layers, MyLinear(64, 10))
    rec = _at_init(deep)
    assert rec.layers[0] == "0" and rec.layer_info[0].kind == "custom"
    (f,) = diagnose(rec)
    assert f.kind == "vanishing" and f.layer == "0" and "Sequential.0 (MyLinear)" in f.message, f.message
    torch.manual_seed(0)
    net = torch.nn.Sequential(MyLinear(64, 32), torch.nn.ReLU(), MyLinear(32, 10))
    _, rec = _trained(net, lr=1e-6)
    (f,) = diagnose(rec)
    assert f.kind == "update_ratio" and "too low" in f.message and "(MyLinear)" in f.message, f.message
    assert not np.isnan(rec.matrix("update_ratio", ["0", "2"])).any()


def test_layers_that_cannot_be_measured_are_named_with_the_reason():
    class Pair(torch.nn.Module):  # returns a dict: nothing for the monitor to reduce
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(64))

        def forward(self, x):
            return {"scaled": x * self.w}

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.pair, self.lstm, self.head = (
                Pair(),
                torch.nn.LSTM(8, 16, batch_first=True),
                torch.nn.Linear(16, 10),
            )

        def forward(self, x):
            out, _ = self.lstm(self.pair(x)["scaled"].view(-1, 8, 8))
            return self.head(out[:, -1])

    torch.manual_seed(0)
    findings = diagnose(_at_init(Net()))
    notes = findings.notes
    assert "lstm (LSTM)" in notes and "hides its hidden states" in notes["lstm (LSTM)"]
    assert "gradient through time" in findings.checks and findings.checks["gradient through time"].startswith(
        "skipped"
    )
    text = report(findings)
    assert "not measured: lstm (LSTM)" in text


def test_one_report_never_gives_contradictory_advice():
    rec = _record([1.0, 1.0, 1.0], update=[0.5, 1e-3, 1e-7])
    findings = diagnose(rec)
    upd = [f for f in findings if f.kind == "update_ratio"]
    assert len(upd) == 1, report(findings)
    text = report(findings)
    assert "too high" in text and "too low" not in text
    assert upd[0].numbers["layers_low"] == 1 and upd[0].layer == "l0"


def test_healthy_says_which_checks_ran_and_which_were_skipped_and_why():
    torch.manual_seed(0)
    _, rec = _trained(make_mlp(hidden=(32,) * 4, init="he"))
    findings = diagnose(rec)
    (f,) = findings
    assert f.kind == "healthy"
    for ran in (
        "dead units on 4 layers",
        "gradient flow across layers on 5 weighted layers",
        "update/data ratio",
    ):
        assert ran in f.message, f.message
    assert "Not checked: " in f.message and "saturation: no tanh/sigmoid module" in f.message
    assert findings.checks["dead units"].startswith("ran")
    assert findings.checks["saturation"].startswith("skipped")
    (g,) = diagnose(_at_init(make_mlp(hidden=(32,) * 4, init="he")))  # no optimiser step
    assert g.kind == "healthy" and "update/data ratio: no optimiser step was recorded" in g.message


def test_every_layer_is_named_by_its_qualified_name_and_type():
    findings = diagnose(_at_init(_sigmoid_stack()))
    (f,) = findings
    assert "Sequential.0 (Linear) vs Sequential.20 (Linear)" in f.message, f.message
    (dead,) = diagnose(run_case("relu_negative_bias"))
    assert "hidden" in dead.message and "(ReLU)" in dead.message and "(Linear)" in dead.message
    rnn = diagnose(run_case("rnn_radius_1.2"))[0]
    assert rnn.message.startswith("cells.0 (RNNCell)")
