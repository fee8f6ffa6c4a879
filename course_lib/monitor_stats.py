"""The monitor's arithmetic: device-side reductions gathered during a step, and the one
transfer that turns them into the step's named statistics.

During a step the hooks only *queue* work: a few 0-d reductions per layer output (Σy,
‖y‖, a count of saturated outputs, the per-unit maximum of a ReLU) and the norm of the
gradient that reaches each output, all left on the tensors' device. The parameters' and
their gradients' norms are taken in one fused call (`torch._foreach_norm`, as
`clip_grad_norm_` does). When the step ends, `StepSums.summarise` moves everything to the
CPU in one transfer per device and combines it in float64 NumPy into per-layer,
per-parameter and per-step values addressed by the names of `monitor_record.LAYER_STATS`,
`PARAM_STATS` and `STEP_STATS`.

Every per-layer value is a sum (of y, of y², of saturated outputs, of ‖∂L/∂h‖²), so
several forward calls of one module in a step (a shared layer, a recurrent cell) combine
exactly by adding. Norms are squared in float64 on the CPU, so a large activation does
not overflow float32 and a vanishing gradient of 1e-30 does not underflow to zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.nn.utils.rnn import PackedSequence

ACC = ("sum", "sumsq", "saturated", "out_grad_sq")  # per-layer sums gathered over a step
_ACC = {name: k for k, name in enumerate(ACC)}

# float32 squares leave its range below ~1e-19 and above ~1e19 (norms); within these bounds a
# float32 vector_norm is exact to rounding, outside them it is recomputed in float64.
_SAFE = (1e-18, 1e18)


def norm(t: torch.Tensor) -> torch.Tensor:
    """‖t‖₂ as a 0-d tensor: float32 accumulation where safe, float64 where the result comes out
    near float32's limits (on the CPU, reading it costs nothing; on an accelerator it is float64)."""
    if t.dtype == torch.float64:
        return torch.linalg.vector_norm(t)
    if t.device.type != "cpu":
        return torch.linalg.vector_norm(t, dtype=torch.float64)
    n = torch.linalg.vector_norm(t)
    if not _SAFE[0] < float(n) < _SAFE[1]:
        n = torch.linalg.vector_norm(t, dtype=torch.float64)
    return n


def norms(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """`norm` of each tensor, in one fused multi-tensor call where PyTorch offers it."""
    if not tensors:
        return []
    if tensors[0].device.type != "cpu":
        try:
            return list(torch._foreach_norm(tensors, 2, dtype=torch.float64))
        except (RuntimeError, TypeError):  # tensors on several devices
            return [norm(t) for t in tensors]
    try:
        out = list(torch._foreach_norm(tensors))
    except (RuntimeError, TypeError):  # a CPU tensor among accelerator tensors
        return [norm(t) for t in tensors]
    for k, v in enumerate(torch.stack(out).tolist()):
        if not _SAFE[0] < v < _SAFE[1] and tensors[k].dtype != torch.float64:
            out[k] = torch.linalg.vector_norm(tensors[k], dtype=torch.float64)
    return out


class Snapshot:
    """A copy of the parameters before the optimiser step, in one flat buffer per (device, dtype):
    one allocation instead of one per parameter. Dropped as soon as the update is measured."""

    def __init__(self, params: list[torch.Tensor]):
        groups: dict[tuple[torch.device, torch.dtype], list[int]] = {}
        for k, p in enumerate(params):
            groups.setdefault((p.device, p.dtype), []).append(k)
        self.index = list(groups.values())
        with torch.no_grad():
            self.buffers = [torch.cat([params[k].detach().reshape(-1) for k in idx]) for idx in self.index]

    @torch.no_grad()
    def update_norms(self, params: list[torch.Tensor]) -> list[torch.Tensor]:
        """‖θ_old - θ_new‖ per parameter (0-d tensors, on the parameters' devices)."""
        out: list[torch.Tensor | None] = [None] * len(params)
        for idx, buf in zip(self.index, self.buffers, strict=True):
            views = list(buf.split([params[k].numel() for k in idx]))
            torch._foreach_sub_(views, [params[k].detach().reshape(-1) for k in idx])  # θ_old - θ_new
            for k, n in zip(idx, norms(views), strict=True):
                out[k] = n
        self.buffers = []
        return out  # type: ignore[return-value]


class UpdateMeter:
    """‖Δθ‖ per parameter across one optimiser step, read from the optimiser where it can be.

    Plain SGD (no weight decay, no Nesterov) moves θ by lr·g, or by lr·(momentum buffer):
    ‖Δθ‖ is then lr times a norm the step already has, and no copy of θ is needed. Any other
    optimiser (Adam, weight decay, ...) gets a copy of its parameters just before its step
    and the difference just after (PyTorch's global optimiser step hooks). A parameter no
    optimiser touched and whose storage did not change moved by exactly 0. Until a step has
    shown that every update goes through an optimiser (an update by hand does not), the whole
    model is copied after backward, as `Snapshot` does, and that exact difference is used.
    """

    def __init__(self, params: list[torch.Tensor]):
        self.params = params
        self.index = {id(p): k for k, p in enumerate(params)}
        self.via_optimizer = False  # learned: the last step's updates all went through optimiser hooks
        self.armed = False

    def arm(self, grad_norms: list[torch.Tensor | None]) -> None:
        """After backward: remember the gradients' norms and versions; copy θ unless not needed."""
        n = len(self.params)
        self.armed = True
        self.grad_norms = grad_norms
        self.grads = [p.grad for p in self.params]
        self.grad_versions = [None if g is None else g._version for g in self.grads]
        self.versions = [p._version for p in self.params]
        self.snapshot = None if self.via_optimizer else Snapshot(self.params)
        self.seen = [False] * n
        self.tensors: list[torch.Tensor | None] = [None] * n  # ‖Δθ‖ = scale · tensor
        self.scale = np.full(n, np.nan)
        self.after: list[tuple[list[int], torch.optim.Optimizer | Snapshot]] = []

    @torch.no_grad()
    def before_step(self, opt: torch.optim.Optimizer) -> None:
        if not self.armed:
            return
        fast, momentum, generic = [], [], []
        for group in opt.param_groups:
            plain = type(opt) is torch.optim.SGD and not group["weight_decay"] and not group["nesterov"]
            plain = plain and not group.get("differentiable", False)
            for p in group["params"]:
                k = self.index.get(id(p))
                if k is None or self.seen[k]:
                    continue
                self.seen[k] = True
                if p.grad is None:  # every optimiser skips it
                    self.scale[k] = 0.0
                elif plain and not group["momentum"]:
                    fast.append(k)
                    self.scale[k] = abs(float(group["lr"]))
                elif plain:
                    momentum.append(k)
                    self.scale[k] = abs(float(group["lr"]))
                else:
                    generic.append(k)
                    self.scale[k] = 1.0
        changed = [  # clipped (or replaced) since backward: take the norm of what the step will use
            k
            for k in fast
            if self.params[k].grad is not self.grads[k]
            or self.grads[k]._version != self.grad_versions[k]
            or self.grad_norms[k] is None
        ]
        for k, v in zip(changed, norms([self.params[k].grad.detach() for k in changed]), strict=True):
            self.tensors[k] = v
        for k in set(fast) - set(changed):
            self.tensors[k] = self.grad_norms[k]
        if momentum:
            self.after.append((momentum, opt))
        if generic:
            self.after.append((generic, Snapshot([self.params[k] for k in generic])))

    @torch.no_grad()
    def after_step(self, opt: torch.optim.Optimizer) -> None:
        if not self.armed:
            return
        keep = []
        for idx, source in self.after:
            if source is opt:  # Δθ = -lr · (the momentum buffer just updated)
                bufs = [opt.state[self.params[k]]["momentum_buffer"] for k in idx]
                for k, v in zip(idx, norms(bufs), strict=True):
                    self.tensors[k] = v
            elif isinstance(source, Snapshot) and all(self.seen[k] for k in idx):
                for k, v in zip(idx, source.update_norms([self.params[k] for k in idx]), strict=True):
                    self.tensors[k] = v
            else:
                keep.append((idx, source))
        self.after = keep

    def result(self) -> tuple[list[torch.Tensor | None], np.ndarray] | None:
        """(tensors, scale): ‖Δθ_k‖ = scale[k] · tensors[k] (tensor None: the scale alone, 0 or NaN)."""
        if not self.armed:
            return None
        self.armed = False
        moved = [p._version != v for p, v in zip(self.params, self.versions, strict=True)]
        if self.snapshot is not None:  # the exact difference of the whole model
            tensors = self.snapshot.update_norms(self.params)
            self.snapshot = None
            self.via_optimizer = all(s or not m for s, m in zip(self.seen, moved, strict=True))
            return list(tensors), np.ones(len(self.params))
        for k, (s, m) in enumerate(zip(self.seen, moved, strict=True)):
            if not s:
                self.scale[k] = np.nan if m else 0.0  # changed outside any optimiser: not measured
        if any(m and not s for s, m in zip(self.seen, moved, strict=True)):
            self.via_optimizer = False  # an update by hand: copy θ from the next step on
        return self.tensors, self.scale


def tensors_in(out: object) -> list[torch.Tensor]:
    """The tensors in a module's output (RNNs return (output, h_n) or (output, (h_n, c_n)))."""
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, PackedSequence):
        return [out.data]
    if isinstance(out, tuple | list):
        return [t for o in out for t in tensors_in(o)]
    if isinstance(out, dict):
        return [t for o in out.values() for t in tensors_in(o)]
    return []


def to_numpy(values: list[torch.Tensor], *, scalars: bool = False) -> np.ndarray:
    """Concatenate 0-d (`scalars`) or 1-d tensors into one float64 array, one transfer per device."""
    if not values:
        return np.empty(0)
    try:  # the usual case: one device (dtypes are promoted)
        if scalars:
            return torch.stack(values).detach().cpu().double().numpy()
        return torch.cat([v.detach().reshape(-1) for v in values]).cpu().double().numpy()
    except RuntimeError:
        pass
    flat = [v.detach().reshape(-1) for v in values]
    sizes = [v.numel() for v in flat]
    starts = np.concatenate([[0], np.cumsum(sizes)])
    out = np.empty(int(starts[-1]), dtype=np.float64)
    groups: dict[torch.device, list[int]] = {}
    for i, v in enumerate(flat):
        groups.setdefault(v.device, []).append(i)
    for idx in groups.values():
        got = torch.cat([flat[i].double() for i in idx]).cpu().numpy()
        pos = np.cumsum([0] + [sizes[i] for i in idx])
        for j, i in enumerate(idx):
            out[starts[i] : starts[i + 1]] = got[pos[j] : pos[j + 1]]
    return out


@dataclass
class Layout:
    """What the summary needs to know about the monitored layers and parameters."""

    n_layers: int
    bounded: np.ndarray  # (layers,) a tanh/sigmoid-like output: saturation applies
    can_die: np.ndarray  # (layers,) a ReLU-like output: dead units apply
    owner: np.ndarray  # (params,) the layer that owns each parameter, -1 for none


@dataclass
class StepSums:
    """Device scalars and held gradients of one step, waiting for the single transfer."""

    n_layers: int
    values: list[torch.Tensor] = field(default_factory=list)  # 0-d sums and norms ...
    slots: list[int] = field(default_factory=list)  # ... added into slot layer * len(ACC) + ACC index
    squared: list[bool] = field(default_factory=list)  # ... after squaring (a norm) or as they are
    peaks: list[torch.Tensor] = field(default_factory=list)  # (units,) max over the batch, ReLU layers
    peak_layer: list[int] = field(default_factory=list)
    grad_norms: list[torch.Tensor] = field(default_factory=list)  # ‖∂L/∂output‖ of each arrival
    norm_layer: list[int] = field(default_factory=list)
    norm_call: list[int] = field(default_factory=list)  # the call of a recurrent cell (its h_t), else -1
    folded: list[torch.Tensor] = field(default_factory=list)  # (layers * len(ACC),) float64 partial sums
    numel: list[int] = field(default_factory=list)  # output elements seen per layer
    calls: list[int] = field(default_factory=list)  # forward calls per layer
    expect_grad: bool = False  # some monitored output required a gradient
    started: bool = False  # a monitored layer has finished a forward call in this step
    input_norm: torch.Tensor | None = None  # ‖x‖ of the model's input (the first layer's input)
    samples: dict[tuple[int, str], torch.Tensor] = field(default_factory=dict)  # (layer, act/grad)
    param_grads: list[torch.Tensor | None] | None = None  # ‖∂L/∂θ‖ per parameter (None: no .grad)
    norms_before: list[torch.Tensor] | None = None  # ‖θ‖ per parameter, before the step

    def __post_init__(self) -> None:
        self.numel = [0] * self.n_layers
        self.calls = [0] * self.n_layers

    def empty(self) -> bool:
        return not (self.values or self.folded or self.grad_norms or self.param_grads is not None)

    def forward_seen(self) -> bool:
        return self.started

    def backward_seen(self) -> bool:
        return bool(self.grad_norms)

    def add(self, layer: int, acc: str, value: torch.Tensor, *, square: bool = False) -> None:
        self.values.append(value)
        self.slots.append(layer * len(ACC) + _ACC[acc])
        self.squared.append(square)

    def fold_values(self) -> None:
        """Add the waiting values slot by slot on their devices (float64): O(layers) tensors held."""
        groups: dict[torch.device, list[int]] = {}
        for k, v in enumerate(self.values):
            groups.setdefault(v.device, []).append(k)
        for device, idx in groups.items():
            vals = torch.stack([self.values[k].double() for k in idx])
            square = torch.tensor([self.squared[k] for k in idx], device=device)
            vals = torch.where(square, vals * vals, vals)
            acc = torch.zeros(self.n_layers * len(ACC), dtype=torch.float64, device=device)
            acc.index_add_(0, torch.tensor([self.slots[k] for k in idx], device=device), vals)
            self.folded.append(acc)
        self.values, self.slots, self.squared = [], [], []

    def add_grad(self, layer: int, call: int, g: torch.Tensor) -> None:
        """‖∂L/∂output‖ now: holding the gradient itself until the step ends would keep autograd
        from reusing its buffers (measured: a backward pass several times slower to allocate)."""
        self.grad_norms.append(norm(g))
        self.norm_layer.append(layer)
        self.norm_call.append(call)

    def summarise(
        self, layout: Layout, deltas: tuple[list[torch.Tensor | None], np.ndarray] | None
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, float], dict[int, np.ndarray]]:
        """(layer rows, parameter rows, step values, per-cell ‖∂L/∂h_t‖ over t) of the step.

        Layer rows are (layers,) arrays keyed by LAYER_STATS names, parameter rows (params,)
        arrays keyed by PARAM_STATS names; `time_grad_*` are filled by the caller from the
        returned per-cell series. One transfer to the CPU per device."""
        n_layers, n_params = self.n_layers, len(layout.owner)
        present = [k for k, g in enumerate(self.param_grads or []) if g is not None]
        parts = [
            self.folded,
            self.values,
            self.grad_norms,
            [self.param_grads[k] for k in present] if self.param_grads else [],  # type: ignore[misc]
            self.norms_before or [],
            [t for t in deltas[0] if t is not None] if deltas else [],
            [self.input_norm] if self.input_norm is not None else [],
            self.peaks,
        ]
        peaks = parts.pop()
        sizes = [sum(t.numel() for t in parts[0])] + [len(part) for part in parts[1:]]  # 0-d after folded
        sizes.append(sum(t.numel() for t in peaks))
        head = to_numpy(parts[0]) if parts[0] else np.empty(0)  # folded partial sums (1-d)
        rest = to_numpy([t for part in parts[1:] for t in part], scalars=True)
        v = np.concatenate([head, rest, to_numpy(peaks)])
        ends = np.cumsum(sizes).tolist()
        folded, values, gnorm, grad_v, before_v, delta_v, input_v, peak_v = (
            v[a:b] for a, b in zip([0, *ends[:-1]], ends, strict=True)
        )

        with np.errstate(over="ignore", invalid="ignore"):
            values = np.where(np.asarray(self.squared, bool), values**2, values)
            gsq = gnorm**2
        slots = np.concatenate(
            [self.slots, np.asarray(self.norm_layer, np.int64) * len(ACC) + _ACC["out_grad_sq"]]
        )
        acc = np.bincount(
            slots.astype(np.int64), np.concatenate([values, gsq]), minlength=n_layers * len(ACC)
        )
        acc = (acc + folded.reshape(-1, n_layers * len(ACC)).sum(axis=0)).reshape(n_layers, len(ACC))
        col = {name: acc[:, k] for name, k in _ACC.items()}
        numel = np.asarray(self.numel, float)
        got = np.bincount(np.asarray(self.norm_layer, np.int64), minlength=n_layers) > 0

        lay: dict[str, np.ndarray] = {}
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = col["sum"] / numel
            lay["act_mean"] = mean
            lay["act_std"] = np.sqrt(np.maximum(col["sumsq"] / numel - mean**2, 0.0))  # E[y²] - E[y]²
            lay["saturated"] = np.where(layout.bounded, col["saturated"] / numel, np.nan)
            units, alive = np.zeros(n_layers), np.zeros(n_layers)
            if self.peaks:  # ReLU outputs are >= 0: a unit whose peak is nonzero is alive
                sizes_p = np.array([t.numel() for t in self.peaks])
                starts = np.concatenate([[0], np.cumsum(sizes_p)[:-1]])
                live = (
                    np.add.reduceat((peak_v != 0).astype(np.float64), starts)
                    if peak_v.size
                    else sizes_p * 0.0
                )
                units = np.bincount(self.peak_layer, weights=sizes_p, minlength=n_layers)
                alive = np.bincount(self.peak_layer, weights=live, minlength=n_layers)
            lay["dead"] = np.where(layout.can_die & (units > 0), 1.0 - alive / units, np.nan)
            lay["out_grad_norm"] = np.where(got, np.sqrt(col["out_grad_sq"]), np.nan)
        for stat in ("act_mean", "act_std", "saturated", "dead"):
            lay[stat] = np.where(numel > 0, lay[stat], np.nan)

        par: dict[str, np.ndarray] = {s: np.full(n_params, np.nan) for s in ("param_norm", "grad_norm")}
        par["grad_norm"][present] = grad_v
        grad_seen = np.zeros(n_params, bool)
        grad_seen[present] = True
        norm_seen = self.norms_before is not None
        if norm_seen:
            par["param_norm"] = before_v
        theta_bad = norm_seen & ~np.isfinite(par["param_norm"])
        grad_bad = grad_seen & ~np.isfinite(par["grad_norm"])
        par["nonfinite"] = np.where(grad_seen | norm_seen, 4.0 * theta_bad + 8.0 * grad_bad, np.nan)

        owned = layout.owner >= 0
        owner = layout.owner[owned]

        def per_layer(x: np.ndarray) -> np.ndarray:  # sqrt(Σ x²) over each layer's own parameters
            with np.errstate(over="ignore"):
                total = np.bincount(owner, weights=np.nan_to_num(x[owned], nan=0.0) ** 2, minlength=n_layers)
            missing = np.bincount(owner, weights=np.isnan(x[owned]), minlength=n_layers) > 0
            return np.where(missing, np.nan, np.sqrt(total))

        has_params = np.bincount(owner, minlength=n_layers) > 0
        lay["grad_norm"] = np.where(has_params, per_layer(par["grad_norm"]), np.nan)
        lay["param_norm"] = np.where(has_params, per_layer(par["param_norm"]), np.nan)
        if deltas:
            scale = deltas[1].copy()
            has = np.array([t is not None for t in deltas[0]], bool)
            scale[has] *= delta_v
            delta_v = scale  # ‖Δθ‖ per parameter
            with np.errstate(divide="ignore", invalid="ignore"):
                par["update_ratio"] = np.where(par["param_norm"] > 0, delta_v / par["param_norm"], np.nan)
                ratio = per_layer(delta_v) / lay["param_norm"]
            lay["update_ratio"] = np.where(has_params & (lay["param_norm"] > 0), ratio, np.nan)

        def any_of(mask: np.ndarray) -> np.ndarray:  # per layer: some own parameter has the flag
            return np.bincount(owner, weights=mask[owned], minlength=n_layers) > 0

        act_bad = (numel > 0) & ~np.isfinite(col["sumsq"])  # ‖y‖ in float64 is finite iff every y is
        out_grad_bad = got & ~np.isfinite(col["out_grad_sq"])
        flags = 1.0 * act_bad + 2.0 * out_grad_bad + 4.0 * any_of(theta_bad) + 8.0 * any_of(grad_bad)
        measured = (numel > 0) | got | any_of(grad_seen | norm_seen)
        lay["nonfinite"] = np.where(measured, flags, np.nan)
        lay["calls"] = np.asarray(self.calls, float)

        times: dict[int, np.ndarray] = {}
        cells = np.asarray(self.norm_call) >= 0
        if cells.any():
            layer_of, call_of = np.asarray(self.norm_layer)[cells], np.asarray(self.norm_call)[cells]
            for layer in np.unique(layer_of):
                mine = layer_of == layer
                series = np.full(int(call_of[mine].max()) + 1, np.nan)
                series[call_of[mine]] = gnorm[cells][mine]
                times[int(layer)] = series
        stp = {
            "backward": float(self.backward_seen() or (not self.expect_grad and bool(present))),
            "input_nonfinite": float(input_v.size > 0 and not math.isfinite(float(input_v[0]))),
        }
        return lay, par, stp, times
