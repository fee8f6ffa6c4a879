"""course_lib.diagnosis: the six constructed cases are each named correctly and nothing else is
flagged; thresholds, attribution and bad input behave as documented."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

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
