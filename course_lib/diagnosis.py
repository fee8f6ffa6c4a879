"""Diagnosis: turn a MonitorRecord into named findings, each with the numbers behind it.

What is checked, and the usual cause:

- exploding: non-finite activations or gradients; the back-propagated gradient
  ‖∂L/∂h_l‖ much larger at the first weighted layer than at the last (a product of
  Jacobians with norms above 1; Pascanu et al. 2013); the same through time in a
  recurrent cell (‖∂L/∂h_1‖ against ‖∂L/∂h_T‖); a gradient norm that grows over training.
- vanishing: the same ratios far below 1 (sigmoid's σ' ≤ 1/4 per layer, a recurrent
  matrix with spectral radius below 1; Bengio et al. 1994, Glorot & Bengio 2010).
- saturated: tanh/sigmoid outputs pinned near their bounds, where the derivative is ~0.
- dead: ReLU units that output 0 for every example, so no gradient flows through them.
- update_ratio: ‖Δθ‖/‖θ‖ per step far from ~1e-3 (learning rate too high or too low).
- healthy: none of the above.

A gradient that vanishes *because* units are dead or saturated is reported once, under
its cause, with the ratio among that finding's numbers. Statistics are medians over the
steps diagnosed, so one noisy step does not raise an alarm.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .data import load_digits
from .deep_linear import make_deep_linear
from .models import make_mlp
from .monitor import GradientMonitor, MonitorRecord
from .recurrent import make_rnn, scale_recurrent_

KINDS = ("exploding", "vanishing", "saturated", "dead", "update_ratio", "healthy")
SEVERITIES = ("info", "warning", "critical")  # healthy findings are "info"
WEIGHTED = ("linear", "conv", "recurrent")  # layers whose output gradients trace the backward pass


@dataclass(frozen=True)
class DiagnosisConfig:
    """Thresholds of the diagnosis. Ratios compare the first weighted layer with the last."""

    vanishing_ratio: float = 1e-3  # first/last gradient below this: vanishing (critical below its square)
    exploding_ratio: float = 1e2  # first/last gradient above this: exploding (critical above its square)
    growth_ratio: float = 1e2  # max global gradient norm / its smallest in the first steps: exploding
    growth_window: int = 3  # how many steps count as "the first steps" for growth_ratio
    saturated_fraction: float = 0.3  # a layer with more saturated outputs than this is saturated
    dead_fraction: float = 0.5  # a layer with more dead units than this has dead units
    critical_fraction: float = 0.9  # dead or saturated above this: critical
    update_ratio_target: float = 1e-3  # the healthy update-to-data ratio
    update_ratio_decades: float = 1.5  # flag layers whose median ratio is this many decades off target
    last_steps: int | None = None  # diagnose only the last N recorded steps (None: all)

    def __post_init__(self) -> None:
        if not 0 < self.vanishing_ratio < 1 < self.exploding_ratio:
            raise ValueError("need 0 < vanishing_ratio < 1 < exploding_ratio")
        for name in ("saturated_fraction", "dead_fraction", "critical_fraction"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in (0, 1], got {getattr(self, name)}")


@dataclass(frozen=True)
class Finding:
    """One named problem (or "healthy"), the layer it is worst in, and the numbers that show it."""

    kind: str  # one of KINDS
    layer: str | None  # the layer it concerns most; None for the whole network
    severity: str  # one of SEVERITIES
    numbers: dict[str, float] = field(default_factory=dict)  # the measurements behind the message
    message: str = ""  # one line: what was seen, and its name

    def __post_init__(self) -> None:
        assert self.kind in KINDS, f"unknown finding kind {self.kind!r}; expected one of {KINDS}"
        assert self.severity in SEVERITIES, f"unknown severity {self.severity!r}"

    def __str__(self) -> str:
        return f"[{self.severity}] {self.message}"


def _e(x: float) -> str:
    return f"{x:.1e}" if math.isfinite(x) and x != 0 else f"{x:g}"


def _median(rows: np.ndarray) -> np.ndarray:
    """Median over steps (axis 1), ignoring NaN; NaN where a row has no value at all."""
    out = np.full(rows.shape[0], np.nan)
    has = ~np.all(np.isnan(rows), axis=1)
    out[has] = np.nanmedian(rows[has], axis=1)
    return out


def _ratio_severity(r: float, cfg: DiagnosisConfig) -> str:
    """Beyond a threshold: warning; beyond its square (1e-6 for 1e-3): critical."""
    return "critical" if (r < cfg.vanishing_ratio**2 or r > cfg.exploding_ratio**2) else "warning"


@dataclass
class _Run:
    """The part of a record being diagnosed: (layers × steps) matrices, rows in forward order."""

    rec: MonitorRecord
    steps: np.ndarray  # step labels of the columns
    m: dict[str, np.ndarray]  # layer statistics
    grads: np.ndarray  # (params × steps) ‖∂L/∂θ‖
    bad_params: np.ndarray  # (params × steps) non-finite θ or ∂L/∂θ

    @classmethod
    def of(cls, rec: MonitorRecord, last: int | None) -> _Run:
        n = rec.n_steps if last is None else min(last, rec.n_steps)
        stats = ("nonfinite", "out_grad_norm", "saturated", "dead", "update_ratio")
        stats += ("time_grad_first", "time_grad_last", "calls")
        m = {s: rec.matrix(s)[:, rec.n_steps - n :] for s in stats}
        grads = rec.param_matrix("grad_norm")[:, rec.n_steps - n :]
        bad = rec.param_matrix("nonfinite")[:, rec.n_steps - n :] > 0
        return cls(rec, rec.steps[rec.n_steps - n :], m, grads, bad)

    def until(self, k: int) -> _Run:
        """The steps before column k."""
        return _Run(
            self.rec,
            self.steps[:k],
            {s: a[:, :k] for s, a in self.m.items()},
            self.grads[:, :k],
            self.bad_params[:, :k],
        )

    def weighted(self) -> list[int]:
        """Rows of Linear/Conv/recurrent layers called once per step (cells are checked through time)."""
        calls = np.nanmax(np.nan_to_num(self.m["calls"], nan=0.0), axis=1, initial=0.0)
        return [i for i, info in enumerate(self.rec.layer_info) if info.kind in WEIGHTED and calls[i] <= 1]

    def flow_ratio(self) -> float | None:
        """Median over steps of ‖∂L/∂h‖ at the first weighted layer over that at the last."""
        rows = self.weighted()
        if len(rows) < 2:
            return None
        with np.errstate(divide="ignore", invalid="ignore"):
            r = self.m["out_grad_norm"][rows[0]] / self.m["out_grad_norm"][rows[-1]]
        r = r[np.isfinite(r)]
        return float(np.median(r)) if r.size else None


def _nonfinite(run: _Run) -> tuple[Finding | None, int | None]:
    """The first step with a NaN or infinity, and where it was; (None, None) if there is none."""
    flags = np.nan_to_num(run.m["nonfinite"], nan=0.0).astype(np.int64)  # bit sum: 1 output, 2 out grad
    bad = (flags > 0).any(0) | run.bad_params.any(0)
    if not bad.any():
        return None, None
    k = int(np.argmax(bad))
    names = run.rec.layers
    where = [(names[i], "activations") for i in np.flatnonzero(flags[:, k] & 1)]
    where += [(names[i], "output gradient") for i in np.flatnonzero(flags[:, k] & 2)]
    where += [(run.rec.params[i], "parameter or gradient") for i in np.flatnonzero(run.bad_params[:, k])]
    layer, what = where[0] if where else (None, "values")
    msg = (
        f"non-finite {what} in {layer} at step {run.steps[k]} ({len(where)} places): exploding "
        "(or a bad input, loss or learning rate)"
    )
    numbers = {"step": float(run.steps[k]), "nonfinite_entries": float(len(where))}
    return Finding("exploding", layer, "critical", numbers, msg), k


def _unit_problems(run: _Run, cfg: DiagnosisConfig) -> list[Finding]:
    """Dead ReLU units and saturated tanh/sigmoid outputs: per-layer medians over steps."""
    found = []
    for kind, threshold, what in (
        ("dead", cfg.dead_fraction, "of ReLU units output 0 for the whole batch"),
        ("saturated", cfg.saturated_fraction, "of outputs sit near a bound of tanh/sigmoid"),
    ):
        frac = _median(run.m[kind])
        applicable = ~np.isnan(frac)
        hit = applicable & (frac > threshold)
        if not hit.any():
            continue
        worst = int(np.argmax(np.where(hit, frac, -1.0)))
        f, n_hit, n_all = float(frac[worst]), int(hit.sum()), int(applicable.sum())
        layer = run.rec.layers[worst]
        numbers = {
            "fraction": f,
            "threshold": threshold,
            "layers_affected": float(n_hit),
            "layers_checked": float(n_all),
        }
        msg = f"{layer}: {f:.0%} {what} ({n_hit} of {n_all} layers above {threshold:.0%}): {kind}"
        found.append(
            Finding(kind, layer, "critical" if f > cfg.critical_fraction else "warning", numbers, msg)
        )
    return found


def _across_layers(run: _Run, cfg: DiagnosisConfig) -> list[Finding]:
    """‖∂L/∂h‖ at the first weighted layer against the last: the product of the Jacobians between."""
    r = run.flow_ratio()
    if r is None or cfg.vanishing_ratio <= r <= cfg.exploding_ratio:
        return []
    rows, names, og = run.weighted(), run.rec.layers, run.m["out_grad_norm"]
    first, last = rows[0], rows[-1]
    numbers = {
        "ratio": r,
        "first_grad": float(np.nanmedian(og[first])),
        "last_grad": float(np.nanmedian(og[last])),
    }
    numbers["layers"] = float(len(rows))
    span = f"{names[first]} vs {names[last]}, {len(rows)} weighted layers"
    if r < cfg.vanishing_ratio:
        msg = f"first-layer gradient {_e(r)} of the last layer's ({span}): vanishing"
        return [Finding("vanishing", names[first], _ratio_severity(r, cfg), numbers, msg)]
    msg = f"first-layer gradient {_e(r)} times the last layer's ({span}): exploding"
    return [Finding("exploding", names[first], _ratio_severity(r, cfg), numbers, msg)]


def _through_time(run: _Run, cfg: DiagnosisConfig) -> list[Finding]:
    """‖∂L/∂h_1‖ against ‖∂L/∂h_T‖ in each recurrent cell: the product of T - 1 Jacobians."""
    found = []
    for i, info in enumerate(run.rec.layer_info):
        with np.errstate(divide="ignore", invalid="ignore"):
            r_steps = run.m["time_grad_first"][i] / run.m["time_grad_last"][i]
        r_steps = r_steps[np.isfinite(r_steps)]
        if info.kind != "recurrent" or r_steps.size == 0:
            continue
        r, t = float(np.median(r_steps)), float(np.nanmedian(run.m["calls"][i]))
        if cfg.vanishing_ratio <= r <= cfg.exploding_ratio:
            continue
        per = r ** (1 / max(t - 1, 1))
        kind, size = (
            ("vanishing", f"{_e(r)} of") if r < cfg.vanishing_ratio else ("exploding", f"{_e(r)} times")
        )
        msg = (
            f"{info.name}: gradient at the first time step {size} the last's "
            f"({per:.3g}x per step over {t:.0f} steps): {kind} through time"
        )
        numbers = {"ratio": r, "time_steps": t, "per_step_factor": per}
        found.append(Finding(kind, info.name, _ratio_severity(r, cfg), numbers, msg))
    return found


def _attribute(causes: list[Finding], flow: list[Finding]) -> tuple[list[Finding], list[Finding]]:
    """Report a vanishing gradient under the dead or saturated units behind it, when they are many
    (critical, or in at least half the layers checked) rather than as a finding of its own."""
    strong = [
        k
        for k, c in enumerate(causes)
        if c.severity == "critical" or 2 * c.numbers["layers_affected"] >= c.numbers["layers_checked"]
    ]
    if not strong:
        return causes, flow
    k = strong[0]
    for f in (f for f in flow if f.kind == "vanishing"):
        c = causes[k]
        numbers = {**c.numbers, "grad_ratio": f.numbers["ratio"]}
        causes[k] = Finding(c.kind, c.layer, c.severity, numbers, f"{c.message}; hence {f.message}")
    return causes, [f for f in flow if f.kind != "vanishing"]


def _growth(run: _Run, cfg: DiagnosisConfig) -> list[Finding]:
    """The largest global gradient norm against the smallest of the first steps."""
    measured = ~np.isnan(run.grads).all(axis=0) if run.grads.size else np.zeros(len(run.steps), bool)
    total = np.sqrt(np.nansum(run.grads[:, measured] ** 2, axis=0))  # global ‖∂L/∂θ‖ per step
    if total.size <= cfg.growth_window:
        return []
    base, peak = float(np.min(total[: cfg.growth_window])), int(np.argmax(total))
    growth = float(total[peak]) / base if base > 0 else math.inf
    if growth <= cfg.growth_ratio:
        return []
    at = int(run.steps[measured][peak])
    msg = f"gradient norm reached {_e(growth)} times its initial value (step {at}): exploding over training"
    numbers = {"growth": growth, "initial": base, "peak": float(total[peak]), "step": float(at)}
    severity = "critical" if growth > cfg.growth_ratio**2 else "warning"
    return [Finding("exploding", None, severity, numbers, msg)]


def _updates(run: _Run, cfg: DiagnosisConfig, explained_low: bool) -> list[Finding]:
    """Median update-to-data ratio per layer, against target × 10^(±decades)."""
    upd = _median(run.m["update_ratio"])
    idx = np.flatnonzero(~np.isnan(upd))
    if idx.size == 0:
        return []
    with np.errstate(divide="ignore"):
        off = np.log10(upd[idx]) - math.log10(cfg.update_ratio_target)
    lo = cfg.update_ratio_target / 10**cfg.update_ratio_decades
    hi = cfg.update_ratio_target * 10**cfg.update_ratio_decades
    band = f"outside [{lo:.0e}, {hi:.0e}]; ~{cfg.update_ratio_target:.0e} is healthy"
    found = []
    for rows, word, pick in (
        (idx[off > cfg.update_ratio_decades], "high", np.argmax),
        (idx[off < -cfg.update_ratio_decades], "low", np.argmin),
    ):
        if rows.size == 0 or (word == "low" and explained_low):
            continue  # tiny updates behind a vanishing gradient or dead units are reported there
        worst = int(rows[pick(upd[rows])])
        layer = run.rec.layers[worst]
        msg = f"update/data ratio {_e(upd[worst])} in {layer} ({rows.size} of {idx.size} layers {band}): learning rate too {word}"
        numbers = {"ratio": float(upd[worst]), "layers_affected": float(rows.size)}
        severity = "critical" if upd[worst] > 1 else "warning"
        found.append(Finding("update_ratio", layer, severity, numbers, msg))
    return found


def _healthy(run: _Run) -> Finding:
    numbers, parts = {"steps": float(len(run.steps))}, []
    if (r := run.flow_ratio()) is not None:
        numbers["grad_ratio"] = r
        parts.append(f"first/last-layer gradient {r:.2g}")
    for stat in ("dead", "saturated"):
        vals = _median(run.m[stat])
        if (~np.isnan(vals)).any():
            numbers[f"max_{stat}"] = float(np.nanmax(vals))
            parts.append(f"at most {np.nanmax(vals):.0%} {stat}")
    upd = _median(run.m["update_ratio"])
    if (~np.isnan(upd)).any():
        numbers["median_update_ratio"] = float(np.nanmedian(upd))
        parts.append(f"update/data ratio ~{np.nanmedian(upd):.0e}")
    return Finding("healthy", None, "info", numbers, "healthy: " + (", ".join(parts) or "nothing wrong"))


def diagnose(record: MonitorRecord | GradientMonitor, config: DiagnosisConfig | None = None) -> list[Finding]:
    """Findings about a monitored run, most severe first; [healthy] when nothing is wrong."""
    cfg = config or DiagnosisConfig()
    rec = record.record if isinstance(record, GradientMonitor) else record
    if not isinstance(rec, MonitorRecord):
        raise TypeError(f"diagnose() takes a MonitorRecord or a GradientMonitor, got {type(record).__name__}")
    if rec.n_steps == 0:
        raise ValueError(
            "the record is empty: train with the monitor, or call record_step(), before diagnosing"
        )
    run = _Run.of(rec, cfg.last_steps)
    findings: list[Finding] = []
    bad, k = _nonfinite(run)
    if bad is not None:  # what came after a NaN says nothing more: diagnose the steps before it
        findings.append(bad)
        run = run.until(k)
        if len(run.steps) == 0:
            return findings
    causes, flow = _attribute(_unit_problems(run, cfg), _across_layers(run, cfg) + _through_time(run, cfg))
    findings += causes + flow + _growth(run, cfg)
    findings += _updates(
        run, cfg, explained_low=any(f.kind in ("vanishing", "dead", "saturated") for f in findings)
    )
    if not findings:
        findings.append(_healthy(run))
    order = {s: i for i, s in enumerate(reversed(SEVERITIES))}
    return sorted(findings, key=lambda f: order[f.severity])


def report(findings: list[Finding]) -> str:
    """The findings as lines of text, most severe first."""
    return "\n".join(str(f) for f in findings)


# ---- the constructed cases the diagnosis is validated on ---------------------------------------


@dataclass(frozen=True)
class Case:
    """A network built to show one problem at initialisation, and the finding it must produce."""

    name: str  # short key
    expected: str  # the one finding kind the diagnosis must give (and no other)
    description: str  # how it is built


CASES = {
    c.name: c
    for c in (
        Case("sigmoid_deep", "vanishing", "10 sigmoid layers of 64, PyTorch's default init, on digits"),
        Case("linear_scale_1.5", "exploding", "20 linear layers of 64, orthogonal weights × 1.5, on digits"),
        Case("relu_negative_bias", "dead", "6 ReLU layers of 64, He init, every bias -2, on digits"),
        Case("tanh_large_init", "saturated", "4 tanh layers of 64, weights N(0, 1), on digits"),
        Case(
            "rnn_radius_1.2",
            "exploding",
            "tanh RNN of 64, orthogonal W_hh with spectral radius 1.2, no bias, 30 steps",
        ),
        Case("relu_he", "healthy", "10 ReLU layers of 64, He init, on digits"),
    )
}


def build_case(name: str, *, seed: int = 0) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """(model, inputs, targets) of a constructed case; the loss is cross-entropy on the model's logits."""
    if name not in CASES:
        raise KeyError(f"unknown case {name!r}; the cases are {list(CASES)}")
    torch.manual_seed(seed)
    if name == "rnn_radius_1.2":
        model = make_rnn("rnn", input_size=1, hidden_size=64, output_size=2)
        scale_recurrent_(model, 1.2, orthogonal=True)
        with torch.no_grad():
            for p_name, p in model.cells.named_parameters():
                if "bias" in p_name:
                    p.zero_()
        x = 0.01 * torch.randn(192, 30, 1)  # (B, T, 1): small inputs keep tanh in its linear range
        return model, x, (x.sum(dim=(1, 2)) > 0).long()
    builders = {
        "sigmoid_deep": lambda: make_mlp(hidden=(64,) * 10, activation="sigmoid"),
        "linear_scale_1.5": lambda: make_deep_linear(20, 64, out_features=10, weight_scale=1.5),
        "relu_negative_bias": lambda: make_mlp(
            hidden=(64,) * 6, activation="relu", init="he", bias_init=-2.0
        ),
        "tanh_large_init": lambda: make_mlp(hidden=(64,) * 4, activation="tanh", init="normal", init_std=1.0),
        "relu_he": lambda: make_mlp(hidden=(64,) * 10, activation="relu", init="he"),
    }
    model = builders[name]()
    x, y = load_digits(seed=seed).train
    return model, x[:192], y[:192]


def run_case(name: str, *, seed: int = 0, steps: int = 3, batch_size: int = 64) -> MonitorRecord:
    """Monitor a constructed case for `steps` mini-batches at initialisation (no optimiser step)."""
    model, x, y = build_case(name, seed=seed)
    with GradientMonitor(model) as mon:
        for k in range(steps):
            xb, yb = x[k * batch_size : (k + 1) * batch_size], y[k * batch_size : (k + 1) * batch_size]
            model.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            mon.record_step(loss)
    return mon.record
