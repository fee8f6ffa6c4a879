"""Diagnosis: turn a MonitorRecord into named findings, each with the numbers behind it.

The rules, and the usual cause of what each one names:

- nonfinite: a NaN or infinity, named where it first appeared: the model's input, the
  parameters (written by the previous update), the output of the first layer that produced
  one, the loss (finite outputs, non-finite loss: a log of 0, a division by 0), or the
  backward pass. What came after it says nothing more, so only the steps before it are
  diagnosed further.
- no_gradient: recorded steps that no backward pass reached (a forward pass without
  `loss.backward()`); the other steps are diagnosed as usual.
- exploding: the back-propagated gradient ‖∂L/∂h_l‖ much larger at the first weighted
  layer than at the last (a product of Jacobians with norms above 1; Pascanu et al. 2013);
  the same through time in a recurrent cell (‖∂L/∂h_1‖ against ‖∂L/∂h_T‖); a gradient
  norm that grows over training.
- vanishing: the same ratios far below 1 (sigmoid's σ' ≤ 1/4 per layer, a recurrent
  matrix with spectral radius below 1; Bengio et al. 1994, Glorot & Bengio 2010).
- saturated: tanh/sigmoid outputs pinned near their bounds, where the derivative is ~0.
- dead: ReLU units that output 0 for every example, so no gradient flows through them.
- update_ratio: ‖Δθ‖/‖θ‖ per step far from ~1e-3 (learning rate too high or too low),
  judged only on layers whose parameters received a non-zero gradient; never "too high"
  and "too low" at once.
- healthy: none of the above; it says which checks ran, on how many layers, and which
  were skipped and why.

"Weighted" layers (Linear, Conv, recurrent, and modules of your own that hold parameters)
trace the backward pass; the first and the last of them that received an output gradient
in a step are compared. A layer that was not called, is frozen, or gets no gradient
(an unused head, a submodule its parent uses functionally) is left out of that comparison,
not allowed to switch it off, and listed in `Diagnosis.notes` with the reason.

A gradient that vanishes *because* units are dead or saturated is reported once, under
its cause, with the ratio among that finding's numbers. Statistics are medians over the
steps diagnosed, so one noisy step does not raise an alarm. Every layer is named by its
qualified name and type (`net.4 (Linear)`). The constructed demonstration cases live in
`diagnosis_cases`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .monitor import GradientMonitor, MonitorRecord
from .monitor_record import LayerInfo

KINDS = ("nonfinite", "no_gradient", "exploding", "vanishing", "saturated", "dead", "update_ratio", "healthy")
SEVERITIES = ("info", "warning", "critical")  # healthy findings are "info"
WEIGHTED = ("linear", "conv", "recurrent", "custom")  # layers whose output gradients trace the backward pass


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
    layer: str | None  # the layer (qualified name) it concerns most; None for the whole network
    severity: str  # one of SEVERITIES
    numbers: dict[str, float] = field(default_factory=dict)  # the measurements behind the message
    message: str = ""  # one line: what was seen, and its name

    def __post_init__(self) -> None:
        assert self.kind in KINDS, f"unknown finding kind {self.kind!r}; expected one of {KINDS}"
        assert self.severity in SEVERITIES, f"unknown severity {self.severity!r}"

    def __str__(self) -> str:
        return f"[{self.severity}] {self.message}"


class Diagnosis(list):
    """The findings (a list, most severe first), plus what the diagnosis could and could not check.

    checks: check name -> "ran: ..." or "skipped: <why>".
    notes: layer label -> why some of its statistics were not measured.
    """

    def __init__(self, findings: list[Finding], checks: dict[str, str], notes: dict[str, str]):
        super().__init__(findings)
        self.checks = checks
        self.notes = notes

    @property
    def kinds(self) -> list[str]:
        return [f.kind for f in self]

    def __str__(self) -> str:
        return report(self)


def _e(x: float) -> str:
    return f"{x:.1e}" if math.isfinite(x) and x != 0 else f"{x:g}"


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _median(rows: np.ndarray) -> np.ndarray:
    """Median over steps (axis 1), ignoring NaN; NaN where a row has no value at all."""
    out = np.full(rows.shape[0], np.nan)
    has = ~np.all(np.isnan(rows), axis=1) if rows.shape[1] else np.zeros(rows.shape[0], bool)
    out[has] = np.nanmedian(rows[has], axis=1)
    return out


def _ratio_severity(r: float, cfg: DiagnosisConfig) -> str:
    """Beyond a threshold: warning; beyond its square (1e-6 for 1e-3): critical."""
    return "critical" if (r < cfg.vanishing_ratio**2 or r > cfg.exploding_ratio**2) else "warning"


_LAYER_STATS_USED = (
    "nonfinite",
    "out_grad_norm",
    "grad_norm",
    "saturated",
    "dead",
    "update_ratio",
    "time_grad_first",
    "time_grad_last",
    "calls",
)


@dataclass
class _Run:
    """The part of a record being diagnosed: (layers × steps) matrices, rows in forward order."""

    rec: MonitorRecord
    info: list[LayerInfo]  # rows
    cols: np.ndarray  # indices of the record's steps in this run
    m: dict[str, np.ndarray]  # layer statistics
    grads: np.ndarray  # (params × steps) ‖∂L/∂θ‖
    bad_params: np.ndarray  # (params × steps) non-finite flags (4 θ, 8 ∂L/∂θ)
    step: dict[str, np.ndarray]  # per-step values (loss, loss_known, backward, input_nonfinite)

    @classmethod
    def of(cls, rec: MonitorRecord, last: int | None) -> _Run:
        n = rec.n_steps if last is None else min(last, rec.n_steps)
        full = cls(
            rec,
            rec.layer_info,
            np.arange(rec.n_steps),
            {s: rec.matrix(s) for s in _LAYER_STATS_USED},
            rec.param_matrix("grad_norm"),
            np.nan_to_num(rec.param_matrix("nonfinite"), nan=0.0).astype(np.int64),
            {s: rec.step_values(s) for s in ("loss", "loss_known", "backward", "input_nonfinite")},
        )
        return full.select(np.arange(rec.n_steps - n, rec.n_steps))

    def select(self, k: np.ndarray) -> _Run:
        """The run restricted to columns k (positions in this run)."""
        return _Run(
            self.rec,
            self.info,
            self.cols[k],
            {s: a[:, k] for s, a in self.m.items()},
            self.grads[:, k],
            self.bad_params[:, k],
            {s: a[k] for s, a in self.step.items()},
        )

    @property
    def steps(self) -> np.ndarray:
        return self.rec.steps[self.cols]

    @property
    def labels(self) -> list[str]:
        return [i.label for i in self.info]

    def weighted_per_step(self) -> list[list[int]]:
        """For each step, the rows of weighted layers called exactly once that received an output
        gradient, in forward order (layers called several times are checked through time)."""
        calls, og = np.nan_to_num(self.m["calls"], nan=0.0), self.m["out_grad_norm"]
        kinds = np.array([i.kind in WEIGHTED for i in self.info])
        ok = kinds[:, None] & (calls == 1) & ~np.isnan(og)
        return [list(np.flatnonzero(ok[:, s])) for s in range(ok.shape[1])]

    def flow(self) -> tuple[float, int, int, int] | None:
        """(median ratio, first row, last row, layers) of ‖∂L/∂h‖ at the first weighted layer
        over the last one, over the steps where at least two weighted layers got a gradient."""
        ratios, firsts, lasts, counts = [], [], [], []
        og = self.m["out_grad_norm"]
        for s, rows in enumerate(self.weighted_per_step()):
            if len(rows) < 2:
                continue
            with np.errstate(divide="ignore", invalid="ignore"):
                r = og[rows[0], s] / og[rows[-1], s]
            if np.isfinite(r):
                ratios.append(r)
                firsts.append(rows[0])
                lasts.append(rows[-1])
                counts.append(len(rows))
        if not ratios:
            return None
        common = lambda xs: max(set(xs), key=xs.count)  # noqa: E731
        return float(np.median(ratios)), common(firsts), common(lasts), common(counts)


# ---- the rules -----------------------------------------------------------------------------------


def _nonfinite(run: _Run) -> tuple[Finding | None, int | None]:
    """The first step with a NaN or infinity, and where in it the first one appeared."""
    flags = np.nan_to_num(run.m["nonfinite"], nan=0.0).astype(np.int64)
    loss_bad = (run.step["loss_known"] > 0) & ~np.isfinite(run.step["loss"])
    input_bad = run.step["input_nonfinite"] > 0
    bad = (flags > 0).any(0) | (run.bad_params > 0).any(0) | loss_bad | input_bad
    if not bad.any():
        return None, None
    k = int(np.argmax(bad))
    labels, f, par = run.labels, flags[:, k], run.bad_params[:, k]
    owner = {n: i.label for i in run.info for n in i.params}
    # in the order they are born within a step: θ, input, forward (in order), loss, backward
    births: list[tuple[str | None, str, str]] = []
    for j in np.flatnonzero(par & 4):
        name = run.rec.params[j]
        births.append(
            (
                _row_name(run, owner.get(name)),
                f"the parameters of {owner.get(name, name)} ({name}), before the forward pass",
                "the previous update wrote them: a learning rate far too large, or a non-finite gradient",
            )
        )
    if input_bad[k]:
        births.append((None, "the model's input", "the data hold NaN or inf: check the batch"))
    for i in np.flatnonzero(f & 1):
        births.append(
            (
                run.info[i].name,
                f"the output of {labels[i]} (every layer before it was finite)",
                "an overflow in this layer: weights or activations grown too large, or an operation "
                "without a finite value (log of 0, division by 0)",
            )
        )
    if loss_bad[k]:
        births.append(
            (
                None,
                f"the loss ({run.step['loss'][k]:g}, from finite model outputs)",
                "the loss function itself: a log of 0, a division by 0 or an exp overflow in it",
            )
        )
    for i in np.flatnonzero(f & 2)[::-1]:  # the backward pass starts at the last layer
        births.append(
            (
                run.info[i].name,
                f"the gradient at the output of {labels[i]}",
                "an overflow in the backward pass",
            )
        )
    for j in np.flatnonzero(par & 8):
        name = run.rec.params[j]
        births.append(
            (_row_name(run, owner.get(name)), f"the gradient of {name}", "an overflow in the backward pass")
        )
    for i in np.flatnonzero(f & 12):
        births.append((run.info[i].name, f"the parameters of {labels[i]} or their gradients", ""))
    layer, where, cause = births[0]
    msg = f"non-finite values first appeared in {where} at step {run.steps[k]}: nonfinite"
    if cause:
        msg += f" (usual cause: {cause})"
    numbers = {"step": float(run.steps[k]), "places": float(len(births))}
    return Finding("nonfinite", layer, "critical", numbers, msg), k


def _row_name(run: _Run, label: str | None) -> str | None:
    return next((i.name for i in run.info if i.label == label), None)


def _no_gradient(run: _Run) -> Finding | None:
    """Steps that no backward pass reached."""
    missing = run.step["backward"] == 0
    if not missing.any():
        return None
    steps = run.steps[missing]
    shown = ", ".join(str(s) for s in steps[:5]) + (", ..." if steps.size > 5 else "")
    msg = (
        f"no gradient was recorded at {steps.size} of {len(run.steps)} steps (step {shown}): a forward "
        "pass that no loss.backward() followed, or record_step() called before backward(): no_gradient"
    )
    numbers = {"steps_without_gradient": float(steps.size), "first_step": float(steps[0])}
    return Finding("no_gradient", None, "critical", numbers, msg)


def _unit_problems(run: _Run, cfg: DiagnosisConfig, checks: dict[str, str]) -> list[Finding]:
    """Dead ReLU units and saturated tanh/sigmoid outputs: per-layer medians over steps."""
    found = []
    for kind, threshold, what, check, missing in (
        (
            "dead",
            cfg.dead_fraction,
            "of ReLU units output 0 for the whole batch",
            "dead units",
            "no ReLU module was called; a functional torch.relu is not seen",
        ),
        (
            "saturated",
            cfg.saturated_fraction,
            "of outputs sit near a bound of tanh/sigmoid",
            "saturation",
            "no tanh/sigmoid module was called; a functional torch.tanh is not seen",
        ),
    ):
        frac = _median(run.m[kind])
        applicable = ~np.isnan(frac)
        if not applicable.any():
            checks[check] = f"skipped: {missing}"
            continue
        n_checked = int(applicable.sum())
        checks[check] = f"ran on {_n(n_checked, 'layer')}, at most {np.nanmax(frac):.0%} {kind}"
        hit = applicable & (frac > threshold)
        if not hit.any():
            continue
        worst = int(np.argmax(np.where(hit, frac, -1.0)))
        f, n_hit, n_all = float(frac[worst]), int(hit.sum()), int(applicable.sum())
        numbers = {
            "fraction": f,
            "threshold": threshold,
            "layers_affected": float(n_hit),
            "layers_checked": float(n_all),
        }
        msg = f"{run.labels[worst]}: {f:.0%} {what} ({n_hit} of {n_all} layers above {threshold:.0%}): {kind}"
        severity = "critical" if f > cfg.critical_fraction else "warning"
        found.append(Finding(kind, run.info[worst].name, severity, numbers, msg))
    return found


def _across_layers(run: _Run, cfg: DiagnosisConfig, checks: dict[str, str]) -> list[Finding]:
    """‖∂L/∂h‖ at the first weighted layer against the last: the product of the Jacobians between."""
    flow = run.flow()
    if flow is None:
        checks["gradient flow across layers"] = (
            "skipped: fewer than two weighted layers called once per step (Linear, Conv, recurrent, "
            "or a module holding parameters) received an output gradient"
        )
        return []
    r, first, last, n = flow
    span = f"{run.labels[first]} vs {run.labels[last]}, {n} weighted layers"
    checks["gradient flow across layers"] = (
        f"ran on {n} weighted layers, {run.labels[first]} to {run.labels[last]}: first/last {r:.2g}"
    )
    if cfg.vanishing_ratio <= r <= cfg.exploding_ratio:
        return []
    og = run.m["out_grad_norm"]
    numbers = {
        "ratio": r,
        "first_grad": float(np.nanmedian(og[first])),
        "last_grad": float(np.nanmedian(og[last])),
        "layers": float(n),
    }
    if r < cfg.vanishing_ratio:
        msg = f"first-layer gradient {_e(r)} of the last layer's ({span}): vanishing"
        return [Finding("vanishing", run.info[first].name, _ratio_severity(r, cfg), numbers, msg)]
    msg = f"first-layer gradient {_e(r)} times the last layer's ({span}): exploding"
    return [Finding("exploding", run.info[first].name, _ratio_severity(r, cfg), numbers, msg)]


def _through_time(run: _Run, cfg: DiagnosisConfig, checks: dict[str, str]) -> list[Finding]:
    """‖∂L/∂h_1‖ against ‖∂L/∂h_T‖ in each recurrent cell: the product of T - 1 Jacobians."""
    found, ran = [], 0
    for i, info in enumerate(run.info):
        with np.errstate(divide="ignore", invalid="ignore"):
            r_steps = run.m["time_grad_first"][i] / run.m["time_grad_last"][i]
        r_steps = r_steps[np.isfinite(r_steps)]
        if info.kind != "recurrent" or r_steps.size == 0:
            continue
        ran += 1
        r, t = float(np.median(r_steps)), float(np.nanmedian(run.m["calls"][i]))
        if cfg.vanishing_ratio <= r <= cfg.exploding_ratio:
            continue
        per = r ** (1 / max(t - 1, 1))
        kind, size = (
            ("vanishing", f"{_e(r)} of") if r < cfg.vanishing_ratio else ("exploding", f"{_e(r)} times")
        )
        msg = (
            f"{info.label}: gradient at the first time step {size} the last's "
            f"({per:.3g}x per step over {t:.0f} steps): {kind} through time"
        )
        numbers = {"ratio": r, "time_steps": t, "per_step_factor": per}
        found.append(Finding(kind, info.name, _ratio_severity(r, cfg), numbers, msg))
    if ran:
        checks["gradient through time"] = f"ran on {_n(ran, 'recurrent cell')}"
    elif any(i.kind == "recurrent" for i in run.info):
        checks["gradient through time"] = (
            "skipped: the recurrent layers are fused nn.RNN/LSTM/GRU, whose kernel hides h_t; "
            "unrolled cells, as course_lib.recurrent.make_rnn builds, can be checked"
        )
    else:
        checks["gradient through time"] = "skipped: no recurrent cell"
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


def _growth(run: _Run, cfg: DiagnosisConfig, checks: dict[str, str]) -> list[Finding]:
    """The largest global gradient norm against the smallest of the first steps."""
    measured = ~np.isnan(run.grads).all(axis=0) if run.grads.size else np.zeros(len(run.steps), bool)
    total = np.sqrt(np.nansum(run.grads[:, measured] ** 2, axis=0))  # global ‖∂L/∂θ‖ per step
    if total.size <= cfg.growth_window:
        checks["gradient growth over training"] = (
            f"skipped: {_n(total.size, 'step')} with parameter gradients; it needs more than {cfg.growth_window}"
        )
        return []
    checks["gradient growth over training"] = f"ran over {_n(total.size, 'step')}"
    base, peak = float(np.min(total[: cfg.growth_window])), int(np.argmax(total))
    growth = float(total[peak]) / base if base > 0 else math.inf
    if growth <= cfg.growth_ratio:
        return []
    at = int(run.steps[measured][peak])
    msg = f"gradient norm reached {_e(growth)} times its initial value (step {at}): exploding over training"
    numbers = {"growth": growth, "initial": base, "peak": float(total[peak]), "step": float(at)}
    severity = "critical" if growth > cfg.growth_ratio**2 else "warning"
    return [Finding("exploding", None, severity, numbers, msg)]


def _layer_update_ratios(run: _Run) -> np.ndarray:
    """Median ‖Δθ‖/‖θ‖ per layer over the steps where its parameters received a non-zero gradient."""
    upd = run.m["update_ratio"].copy()
    g = run.m["grad_norm"]
    with np.errstate(invalid="ignore"):
        upd[~(g > 0) | ~np.isfinite(g)] = np.nan  # no gradient: no step to judge the learning rate by
    return _median(upd)


def _updates(run: _Run, cfg: DiagnosisConfig, explained_low: bool, checks: dict[str, str]) -> list[Finding]:
    """Median update-to-data ratio per layer, against target × 10^(±decades); one finding at most."""
    upd = _layer_update_ratios(run)
    idx = np.flatnonzero(~np.isnan(upd))
    if idx.size == 0:
        recorded = ~np.isnan(run.m["update_ratio"]).all()
        checks["update/data ratio"] = (
            "skipped: no layer's parameters received a non-zero gradient in a step with an update"
            if recorded
            else "skipped: no optimiser step was recorded (record_step() takes none; train() does)"
        )
        return []
    checks["update/data ratio"] = f"ran on {_n(idx.size, 'layer')}, median {np.median(upd[idx]):.0e}"
    with np.errstate(divide="ignore"):
        off = np.log10(upd[idx]) - math.log10(cfg.update_ratio_target)
    lo = cfg.update_ratio_target / 10**cfg.update_ratio_decades
    hi = cfg.update_ratio_target * 10**cfg.update_ratio_decades
    band = f"outside [{lo:.0e}, {hi:.0e}]; ~{cfg.update_ratio_target:.0e} is healthy"
    high, low = idx[off > cfg.update_ratio_decades], idx[off < -cfg.update_ratio_decades]
    if low.size and explained_low:
        low = low[:0]  # tiny updates behind a vanishing gradient or dead units are reported there
    labels = run.labels
    if high.size:
        worst = int(high[np.argmax(upd[high])])
        numbers = {"ratio": float(upd[worst]), "layers_affected": float(high.size)}
        msg = (
            f"update/data ratio {_e(upd[worst])} in {labels[worst]} ({high.size} of {idx.size} layers "
            f"{band}): learning rate too high"
        )
        if low.size:  # one advice: the high layers bound the learning rate; the low ones are a scale issue
            slow = int(low[np.argmin(upd[low])])
            numbers.update(low_ratio=float(upd[slow]), layers_low=float(low.size))
            msg += (
                f"; {low.size} other layers move far less (down to {_e(upd[slow])} in {labels[slow]}): "
                "their scale differs, which one learning rate cannot fix (initialisation, normalisation, "
                "or an adaptive optimiser)"
            )
        severity = "critical" if upd[worst] > 1 else "warning"
        return [Finding("update_ratio", run.info[worst].name, severity, numbers, msg)]
    if low.size:
        worst = int(low[np.argmin(upd[low])])
        numbers = {"ratio": float(upd[worst]), "layers_affected": float(low.size)}
        msg = (
            f"update/data ratio {_e(upd[worst])} in {labels[worst]} ({low.size} of {idx.size} layers "
            f"{band}): learning rate too low"
        )
        return [Finding("update_ratio", run.info[worst].name, "warning", numbers, msg)]
    return []


def _healthy(run: _Run, checks: dict[str, str]) -> Finding:
    """Nothing found: say what was checked, on what, and what could not be checked and why."""
    numbers = {"steps": float(len(run.steps))}
    if (flow := run.flow()) is not None:
        numbers["grad_ratio"] = flow[0]
    for stat in ("dead", "saturated"):
        vals = _median(run.m[stat])
        if (~np.isnan(vals)).any():
            numbers[f"max_{stat}"] = float(np.nanmax(vals))
    upd = _layer_update_ratios(run)
    if (~np.isnan(upd)).any():
        numbers["median_update_ratio"] = float(np.nanmedian(upd))
    ran = [f"{name} {why.removeprefix('ran ')}" for name, why in checks.items() if why.startswith("ran")]
    skipped = [
        f"{name}: {why.removeprefix('skipped: ')}" for name, why in checks.items() if why.startswith("skip")
    ]
    msg = f"healthy over {_n(len(run.steps), 'step')}; checked: " + "; ".join(ran)
    if skipped:
        msg += ". Not checked: " + "; ".join(skipped)
    return Finding("healthy", None, "info", numbers, msg)


def _notes(run: _Run) -> dict[str, str]:
    """Why some layers' statistics were not measured, by layer label."""
    notes: dict[str, str] = {}
    if len(run.steps) == 0:  # nothing reached the backward pass: only what the record knows
        return {i.label: run.rec.notes[i.name] for i in run.info if i.name in run.rec.notes}
    calls = np.nan_to_num(run.m["calls"], nan=0.0).sum(axis=1)
    g = run.m["grad_norm"]
    got_grad = (np.nan_to_num(g, nan=0.0) > 0).any(axis=1) if g.size else np.zeros(len(run.info), bool)
    og = ~np.isnan(run.m["out_grad_norm"]).all(axis=1) if g.size else np.zeros(len(run.info), bool)
    for i, info in enumerate(run.info):
        if info.name in run.rec.notes:
            notes[info.label] = run.rec.notes[info.name]
        elif calls[i] == 0 and got_grad[i]:
            notes[info.label] = (
                "never called as a module, yet its parameters received gradients: its parent uses "
                "them functionally (as MultiheadAttention does with out_proj); parameter gradients "
                "and updates are measured, its output is not"
            )
        elif calls[i] == 0:
            notes[info.label] = "not used in the diagnosed steps (never called; no gradient reached it)"
        elif info.frozen:
            notes[info.label] = "frozen (requires_grad=False): no parameter gradient or update to judge"
        elif info.params and not got_grad[i]:
            notes[info.label] = "its parameters received no gradient (its output does not reach the loss)"
        elif info.kind in WEIGHTED and not og[i]:
            notes[info.label] = "no gradient reached its output (frozen, or detached from the loss)"
    return notes


def diagnose(record: MonitorRecord | GradientMonitor, config: DiagnosisConfig | None = None) -> Diagnosis:
    """Findings about a monitored run, most severe first; [healthy] when nothing is wrong.

    Returns a `Diagnosis`: a list of `Finding`s that also says which checks ran (`checks`)
    and which layers could not be measured, and why (`notes`)."""
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
    checks: dict[str, str] = {"non-finite values": f"ran on {_n(len(run.steps), 'step')}"}
    bad, k = _nonfinite(run)
    if bad is not None:  # what came after a NaN says nothing more: diagnose the steps before it
        findings.append(bad)
        run = run.select(np.arange(k))
    missing = _no_gradient(run) if len(run.steps) else None
    if missing is not None:
        findings.append(missing)
        run = run.select(np.flatnonzero(run.step["backward"] > 0))
    notes = _notes(run)
    if len(run.steps) == 0:
        return Diagnosis(findings, checks, notes)
    causes, flow = _attribute(
        _unit_problems(run, cfg, checks), _across_layers(run, cfg, checks) + _through_time(run, cfg, checks)
    )
    findings += causes + flow + _growth(run, cfg, checks)
    explained = any(f.kind in ("vanishing", "dead", "saturated") for f in findings)
    findings += _updates(run, cfg, explained, checks)
    if not findings:
        findings.append(_healthy(run, checks))
    order = {s: i for i, s in enumerate(reversed(SEVERITIES))}
    return Diagnosis(sorted(findings, key=lambda f: order[f.severity]), checks, notes)


def report(findings: list[Finding]) -> str:
    """The findings as lines of text, most severe first; then the layers that could not be measured."""
    lines = [str(f) for f in findings]
    for label, why in getattr(findings, "notes", {}).items():
        lines.append(f"  not measured: {label}: {why}")
    return "\n".join(lines)


# The constructed demonstration cases moved to diagnosis_cases; imported here so that
# `from course_lib.diagnosis import CASES, run_case` keeps working.
from .diagnosis_cases import CASES, Case, build_case, run_case  # noqa: E402

__all__ = [
    "CASES",
    "KINDS",
    "SEVERITIES",
    "Case",
    "Diagnosis",
    "DiagnosisConfig",
    "Finding",
    "build_case",
    "diagnose",
    "report",
    "run_case",
]
