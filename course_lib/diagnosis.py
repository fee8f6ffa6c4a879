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


def _ratio_severity(r: float, lo: float, hi: float) -> str:
    return "critical" if (r < lo**2 or r > hi**2 or not math.isfinite(r)) else "warning"


def diagnose(record: MonitorRecord | GradientMonitor, config: DiagnosisConfig | None = None) -> list[Finding]:
    """Findings about a monitored run, most severe first; [healthy] when nothing is wrong."""
    cfg = config or DiagnosisConfig()
    rec = record.record if isinstance(record, GradientMonitor) else record
    if not isinstance(rec, MonitorRecord):
        raise TypeError(f"diagnose() takes a MonitorRecord or a GradientMonitor, got {type(record).__name__}")
    if rec.n_steps == 0:
        raise ValueError("the record is empty: train with the monitor, or call record_step(), before diagnosing")
    infos, names = rec.layer_info, rec.layers
    steps = np.arange(rec.n_steps)
    if cfg.last_steps is not None:
        steps = steps[-cfg.last_steps :]
    m = {s: rec.matrix(s)[:, steps] for s in ("nonfinite", "out_grad_norm", "saturated", "dead", "update_ratio")}
    m.update({s: rec.matrix(s)[:, steps] for s in ("time_grad_first", "time_grad_last", "calls")})
    grads = rec.param_matrix("grad_norm")[:, steps]
    findings: list[Finding] = []

    # 1. non-finite values: diagnose the steps before them, say where they started.
    bad_act = m["nonfinite"] > 0
    bad_grad = ~np.isfinite(m["out_grad_norm"]) & ~np.isnan(m["out_grad_norm"])
    bad_param = ~np.isfinite(grads) & ~np.isnan(grads)
    bad_step = bad_act.any(0) | bad_grad.any(0) | bad_param.any(0)
    if bad_step.any():
        k = int(np.argmax(bad_step))
        where = [(names[i], "activations") for i in np.flatnonzero(bad_act[:, k])]
        where += [(names[i], "output gradient") for i in np.flatnonzero(bad_grad[:, k])]
        where += [(rec.params[i], "gradient") for i in np.flatnonzero(bad_param[:, k])]
        layer, what = where[0] if where else (None, "values")
        findings.append(
            Finding(
                "exploding",
                layer,
                "critical",
                {"step": float(steps[k]), "nonfinite_entries": float(len(where))},
                f"non-finite {what} in {layer} at step {steps[k]} ({len(where)} places): exploding "
                "(or a bad input, loss or learning rate)",
            )
        )
        keep = np.arange(len(steps)) < k
        steps, grads = steps[keep], grads[:, keep]
        m = {s: a[:, keep] for s, a in m.items()}
        if len(steps) == 0:
            return findings

    # 2. dead units and 3. saturation: medians over steps, per layer.
    causes: list[Finding] = []
    for kind, stat, threshold, what in (
        ("dead", "dead", cfg.dead_fraction, "of ReLU units output 0 for the whole batch"),
        ("saturated", "saturated", cfg.saturated_fraction, "of outputs sit near a bound of tanh/sigmoid"),
    ):
        frac = _median(m[stat])
        applicable = ~np.isnan(frac)
        hit = applicable & (frac > threshold)
        if hit.any():
            worst = int(np.nanargmax(np.where(hit, frac, -1)))
            f = float(frac[worst])
            numbers = {"fraction": f, "threshold": threshold, "layers_affected": float(hit.sum())}
            numbers["layers_checked"] = float(applicable.sum())
            sev = "critical" if f > cfg.critical_fraction else "warning"
            msg = f"{names[worst]}: {f:.0%} {what} ({int(hit.sum())} of {int(applicable.sum())} layers above {threshold:.0%}): {kind}"
            causes.append(Finding(kind, names[worst], sev, numbers, msg))

    # 4. the backward pass across layers: ‖∂L/∂h‖ at the first weighted layer over the last.
    # Modules called more than once per step (recurrent cells) are checked through time instead.
    once = np.nanmax(np.nan_to_num(m["calls"], nan=0.0), axis=1) <= 1 if len(steps) else np.ones(len(infos), bool)
    weighted = [i for i, info in enumerate(infos) if info.kind in WEIGHTED and once[i]]
    flow: list[Finding] = []
    if len(weighted) >= 2:
        first, last = weighted[0], weighted[-1]
        with np.errstate(divide="ignore", invalid="ignore"):
            per_step = m["out_grad_norm"][first] / m["out_grad_norm"][last]
        per_step = per_step[np.isfinite(per_step) | (per_step == np.inf)]
        if per_step.size:
            r = float(np.median(per_step))
            numbers = {"ratio": r, "first_grad": float(np.nanmedian(m["out_grad_norm"][first]))}
            numbers["last_grad"] = float(np.nanmedian(m["out_grad_norm"][last]))
            numbers["layers"] = float(len(weighted))
            span = f"{names[first]} vs {names[last]}, {len(weighted)} weighted layers"
            if r < cfg.vanishing_ratio:
                msg = f"first-layer gradient {_e(r)} of the last layer's ({span}): vanishing"
                flow.append(Finding("vanishing", names[first], _ratio_severity(r, cfg.vanishing_ratio, cfg.exploding_ratio), numbers, msg))
            elif r > cfg.exploding_ratio:
                msg = f"first-layer gradient {_e(r)} times the last layer's ({span}): exploding"
                flow.append(Finding("exploding", names[first], _ratio_severity(r, cfg.vanishing_ratio, cfg.exploding_ratio), numbers, msg))

    # 5. through time, in each recurrent cell: ‖∂L/∂h_1‖ over ‖∂L/∂h_T‖.
    for i, info in enumerate(infos):
        with np.errstate(divide="ignore", invalid="ignore"):
            per_step = m["time_grad_first"][i] / m["time_grad_last"][i]
        per_step = per_step[~np.isnan(per_step)]
        if info.kind != "recurrent" or per_step.size == 0:
            continue
        r, t = float(np.median(per_step)), float(np.nanmedian(m["calls"][i]))
        if not (r < cfg.vanishing_ratio or r > cfg.exploding_ratio):
            continue
        per = r ** (1 / max(t - 1, 1)) if r > 0 else 0.0
        kind = "vanishing" if r < cfg.vanishing_ratio else "exploding"
        size = f"{_e(r)} of" if kind == "vanishing" else f"{_e(r)} times"
        msg = f"{names[i]}: gradient at the first time step {size} the last's ({per:.3g}x per step over {t:.0f} steps): {kind} through time"
        numbers = {"ratio": r, "time_steps": t, "per_step_factor": per}
        flow.append(Finding(kind, names[i], _ratio_severity(r, cfg.vanishing_ratio, cfg.exploding_ratio), numbers, msg))

    # A vanishing gradient with many dead or saturated units behind it is reported under its cause.
    strong = [c for c in causes if c.severity == "critical" or c.numbers["layers_affected"] * 2 >= c.numbers["layers_checked"]]
    if strong:
        explained = [f for f in flow if f.kind == "vanishing"]
        flow = [f for f in flow if f.kind != "vanishing"]
        for f in explained:
            c = strong[0]
            k = causes.index(c)
            extra = {"grad_ratio": f.numbers["ratio"]}
            causes[k] = strong[0] = Finding(c.kind, c.layer, c.severity, {**c.numbers, **extra}, f"{c.message}; hence {f.message}")
    findings += causes + flow

    # 6. growth over training: the largest global gradient norm against the first steps'.
    measured = ~np.isnan(grads).all(axis=0) if grads.size else np.zeros(len(steps), bool)
    total = np.sqrt(np.nansum(grads[:, measured] ** 2, axis=0))  # global ‖∂L/∂θ‖ per step
    if total.size > cfg.growth_window:
        base = float(np.min(total[: cfg.growth_window]))
        peak_at = int(np.argmax(total))
        growth = float(total[peak_at]) / base if base > 0 else math.inf
        if growth > cfg.growth_ratio:
            at = int(steps[measured][peak_at])
            msg = f"gradient norm reached {_e(growth)} times its initial value (step {at}): exploding over training"
            numbers = {"growth": growth, "initial": base, "peak": float(total[peak_at]), "step": float(at)}
            findings.append(Finding("exploding", None, _ratio_severity(growth, 0.5, cfg.growth_ratio), numbers, msg))

    # 7. update-to-data ratios, per layer with parameters, when an optimiser step was recorded.
    upd = _median(m["update_ratio"])
    has = ~np.isnan(upd)
    if has.any():
        with np.errstate(divide="ignore"):
            off = np.log10(upd[has]) - math.log10(cfg.update_ratio_target)
        idx = np.flatnonzero(has)
        high, low = idx[off > cfg.update_ratio_decades], idx[off < -cfg.update_ratio_decades]
        lo_b = cfg.update_ratio_target / 10**cfg.update_ratio_decades
        hi_b = cfg.update_ratio_target * 10**cfg.update_ratio_decades
        band = f"outside [{lo_b:.0e}, {hi_b:.0e}]; ~{cfg.update_ratio_target:.0e} is healthy"
        if high.size:
            worst = int(high[np.argmax(upd[high])])
            msg = f"update/data ratio {_e(upd[worst])} in {names[worst]} ({high.size} of {has.sum()} layers {band}): learning rate too high"
            numbers = {"ratio": float(upd[worst]), "layers_affected": float(high.size)}
            findings.append(Finding("update_ratio", names[worst], "critical" if upd[worst] > 1 else "warning", numbers, msg))
        if low.size and not any(f.kind in ("vanishing", "dead", "saturated") for f in findings):
            worst = int(low[np.argmin(upd[low])])
            msg = f"update/data ratio {_e(upd[worst])} in {names[worst]} ({low.size} of {has.sum()} layers {band}): learning rate too low"
            numbers = {"ratio": float(upd[worst]), "layers_affected": float(low.size)}
            findings.append(Finding("update_ratio", names[worst], "warning", numbers, msg))

    if not findings:
        numbers = {"steps": float(len(steps))}
        parts = []
        if flow_ratio := _flow_ratio(m["out_grad_norm"], weighted):
            numbers["grad_ratio"] = flow_ratio
            parts.append(f"first/last-layer gradient {flow_ratio:.2g}")
        for stat in ("dead", "saturated"):
            vals = _median(m[stat])
            if (~np.isnan(vals)).any():
                numbers[f"max_{stat}"] = float(np.nanmax(vals))
                parts.append(f"at most {np.nanmax(vals):.0%} {stat}")
        if has.any():
            numbers["median_update_ratio"] = float(np.median(upd[has]))
            parts.append(f"update/data ratio ~{np.median(upd[has]):.0e}")
        findings.append(Finding("healthy", None, "info", numbers, "healthy: " + (", ".join(parts) or "nothing wrong")))
    order = {s: i for i, s in enumerate(reversed(SEVERITIES))}
    return sorted(findings, key=lambda f: order[f.severity])


def _flow_ratio(out_grad: np.ndarray, weighted: list[int]) -> float | None:
    if len(weighted) < 2:
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        r = out_grad[weighted[0]] / out_grad[weighted[-1]]
    r = r[np.isfinite(r)]
    return float(np.median(r)) if r.size else None


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
        Case("rnn_radius_1.2", "exploding", "tanh RNN of 64, orthogonal W_hh with spectral radius 1.2, no bias, 30 steps"),
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
        "relu_negative_bias": lambda: make_mlp(hidden=(64,) * 6, activation="relu", init="he", bias_init=-2.0),
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
