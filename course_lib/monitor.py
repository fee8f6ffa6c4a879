"""Gradient monitor: per-layer, per-step summaries of activations, gradients and parameter updates.

Hooks on a model's layers (Linear, Conv, RNN/LSTM/GRU, normalisation layers, activation
modules) record, for every training step, numbers rather than tensors, so memory stays
flat over long runs:

- activation mean and std of each layer's output;
- saturated fraction of tanh/sigmoid outputs (within `saturation_eps` of a bound, where
  the derivative is nearly zero; Glorot & Bengio 2010);
- dead fraction of ReLU units (zero for every example in the batch);
- gradient norm of each layer's output ‖∂L/∂h_l‖ (the back-propagated signal) and of
  each parameter ‖∂L/∂θ‖;
- for recurrent cells (nn.RNNCell/LSTMCell/GRUCell, called once per time step),
  ‖∂L/∂h_t‖ at the first and the last step: the gradient that travelled back through
  time (Pascanu et al. 2013). A fused nn.RNN/LSTM hides its h_t inside one kernel, so
  only its output statistics are recorded (recurrent.RecurrentNet unrolls cells);
- the update-to-data ratio ‖Δθ‖/‖θ‖ of each parameter across one optimiser step
  (healthy near 1e-3; Karpathy, CS231n);
- per-layer samples of activations and output gradients every `histogram_every` steps,
  only when asked.

Use it with the course's training loop (it is a `training.Callback`):

    with GradientMonitor(model) as mon:            # attaches hooks; detaches on exit
        train(model, data, callbacks=[mon])
    findings = diagnose(mon.record)

or by hand, without an optimiser:

    with GradientMonitor(model) as mon:
        loss = loss_fn(model(x), y)
        loss.backward()
        mon.record_step(loss)                      # activations and gradients, no update ratio

or in your own loop with an optimiser, calling the Callback methods yourself:

        loss.backward(); mon.on_after_backward(step, model)
        opt.step();      mon.on_step_end(step, model, float(loss))

Only forward passes with gradients enabled are recorded (evaluation under
`torch.no_grad()` is ignored). Statistics are computed on the tensors' own device and
moved to the CPU once per step, in one transfer.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence

from .training import Callback

LAYER_STATS = (
    "act_mean",  # mean of the layer's output over every element
    "act_std",  # population std of the output over every element
    "saturated",  # fraction of outputs within saturation_eps of a tanh/sigmoid bound (NaN: no bounds)
    "dead",  # fraction of ReLU units that are zero for every example in the batch (NaN: not a ReLU)
    "nonfinite",  # 1.0 when the output held a non-finite value, else 0.0
    "out_grad_norm",  # ‖∂L/∂output‖₂ over the whole batch (NaN: no gradient reached the output)
    "grad_norm",  # ‖∂L/∂θ‖₂ over the layer's own parameters together (NaN: no parameters)
    "param_norm",  # ‖θ‖₂ of the layer's own parameters, before the update
    "update_ratio",  # ‖Δθ‖₂ / ‖θ‖₂ across the optimiser step (NaN: no step recorded)
    "time_grad_first",  # recurrent cells only: ‖∂L/∂h_t‖ at the first time step (first call)
    "time_grad_last",  # recurrent cells only: ‖∂L/∂h_t‖ at the last time step (last call)
    "calls",  # forward calls of the module in the step (T for a recurrent cell; 0: not used)
)
PARAM_STATS = ("param_norm", "grad_norm", "update_ratio")  # as above, per named parameter

_SATURATING = {nn.Sigmoid: (0.0, 1.0), nn.Tanh: (-1.0, 1.0), nn.Hardsigmoid: (0.0, 1.0)}
_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU)
_ACTIVATIONS += (nn.Mish, nn.Softplus, nn.Softsign, nn.Hardswish, nn.Hardtanh, *_SATURATING)
_NORMS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, *([nn.RMSNorm] * hasattr(nn, "RMSNorm")))
_KINDS = {
    "linear": (nn.Linear, nn.Bilinear),
    "conv": (nn.modules.conv._ConvNd,),
    "recurrent": (nn.RNNBase, nn.RNNCellBase),
    "norm": _NORMS,
    "activation": _ACTIVATIONS,
}
_ATTACHED: weakref.WeakKeyDictionary[nn.Module, GradientMonitor] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class MonitorConfig:
    """What the monitor measures and keeps."""

    saturation_eps: float = 0.01  # a tanh/sigmoid output closer than this to a bound counts as saturated
    unit_dim: int = 1  # axis of a layer's output that indexes units/channels (-1 for (B, T, C) outputs)
    track_updates: bool = True  # copy parameters each step to measure ‖Δθ‖/‖θ‖ (one transient copy)
    histogram_every: int | None = None  # keep activation/gradient samples every N recorded steps
    histogram_size: int = 2048  # values kept per layer and per kept step

    def __post_init__(self) -> None:
        if not 0 < self.saturation_eps < 0.5:
            raise ValueError(f"saturation_eps must be in (0, 0.5), got {self.saturation_eps}")
        if self.histogram_every is not None and self.histogram_every < 1:
            raise ValueError(f"histogram_every must be >= 1 or None, got {self.histogram_every}")
        if self.histogram_size < 1:
            raise ValueError(f"histogram_size must be >= 1, got {self.histogram_size}")


@dataclass(frozen=True)
class LayerInfo:
    """A monitored module: where it sits and which statistics apply to it."""

    name: str  # dotted name in the model ("hidden3.linear"); "(model)" for the root itself
    kind: str  # "linear", "conv", "recurrent", "norm" or "activation"
    type_name: str  # the module's class name
    bounds: tuple[float, float] | None  # output bounds of a saturating activation (tanh, sigmoid)
    can_die: bool  # ReLU-like: a unit that outputs 0 for every example is dead
    params: tuple[str, ...]  # full names of the module's own trainable parameters


def _layer_info(name: str, module: nn.Module) -> LayerInfo | None:
    kind = next((k for k, types in _KINDS.items() if isinstance(module, types)), None)
    if kind is None:
        return None
    bounds = next((b for t, b in _SATURATING.items() if isinstance(module, t)), None)
    nonlin = getattr(module, "nonlinearity", None)  # nn.RNN / nn.RNNCell
    if isinstance(module, nn.Hardtanh) and not isinstance(module, nn.ReLU6):
        bounds = (float(module.min_val), float(module.max_val))
    if kind == "recurrent" and nonlin == "tanh":
        bounds = (-1.0, 1.0)
    can_die = isinstance(module, nn.ReLU | nn.ReLU6) or (kind == "recurrent" and nonlin == "relu")
    own = tuple(f"{name}.{p}" if name else p for p, t in module.named_parameters(recurse=False) if t.requires_grad)
    return LayerInfo(name or "(model)", kind, type(module).__name__, bounds, can_die, own)


class MonitorRecord:
    """What a GradientMonitor saw: per-layer and per-parameter statistics for each recorded step.

    `matrix(stat)` gives a (layers × steps) array for a LAYER_STATS name, rows in forward
    order, or a (params × steps) array for `param_matrix(stat)`. NaN means "not measured
    for this layer or step" (e.g. `dead` of a tanh layer), never a silent zero.
    """

    def __init__(self, layers: Sequence[LayerInfo], params: Sequence[str]):
        self._layers = list(layers)
        self.params: list[str] = list(params)  # full parameter names, in model order
        self.loss: list[float] = []  # loss of each recorded step (NaN when not given)
        self.order: list[int] = []  # indices of layers in the order of their first forward call
        self.samples: dict[int, dict[str, dict[str, np.ndarray]]] = {}  # step -> layer -> "act"/"grad" -> values
        self._lay = np.full((8, len(layers), len(LAYER_STATS)), np.nan, dtype=np.float32)
        self._par = np.full((8, len(params), len(PARAM_STATS)), np.nan, dtype=np.float32)
        self._n = 0

    @property
    def n_steps(self) -> int:
        return self._n

    @property
    def steps(self) -> np.ndarray:
        """Recorded step indices 0..n-1 (the monitor counts its own steps)."""
        return np.arange(self._n)

    @property
    def layer_info(self) -> list[LayerInfo]:
        """LayerInfo of every monitored layer, in forward order (unused layers last)."""
        seen = set(self.order)
        return [self._layers[i] for i in self.order + [i for i in range(len(self._layers)) if i not in seen]]

    @property
    def layers(self) -> list[str]:
        return [info.name for info in self.layer_info]

    def _append(self, lay: np.ndarray, par: np.ndarray, loss: float) -> None:
        if self._n == len(self._lay):  # grow by doubling: amortised O(1) per step
            self._lay = np.concatenate([self._lay, np.full_like(self._lay, np.nan)])
            self._par = np.concatenate([self._par, np.full_like(self._par, np.nan)])
        self._lay[self._n], self._par[self._n] = lay, par
        self.loss.append(loss)
        self._n += 1

    def matrix(self, stat: str, layers: Iterable[str] | None = None) -> np.ndarray:
        """(layers × steps) float64 array of a LAYER_STATS statistic, rows in `self.layers` order."""
        if stat not in LAYER_STATS:
            raise KeyError(f"unknown layer statistic {stat!r}; choose from {LAYER_STATS} (or param_matrix)")
        names = self.layers if layers is None else list(layers)
        index = {info.name: i for i, info in enumerate(self._layers)}
        missing = [n for n in names if n not in index]
        if missing:
            raise KeyError(f"not monitored: {missing}; monitored layers are {self.layers}")
        rows = [index[n] for n in names]
        return self._lay[: self._n, rows, LAYER_STATS.index(stat)].T.astype(np.float64)

    def param_matrix(self, stat: str) -> np.ndarray:
        """(params × steps) float64 array of a PARAM_STATS statistic, rows in `self.params` order."""
        if stat not in PARAM_STATS:
            raise KeyError(f"unknown parameter statistic {stat!r}; choose from {PARAM_STATS}")
        return self._par[: self._n, :, PARAM_STATS.index(stat)].T.astype(np.float64)

    def nbytes(self) -> int:
        """Memory held by the summaries (the histogram samples included)."""
        kept = sum(a.nbytes for per in self.samples.values() for d in per.values() for a in d.values())
        return self._lay.nbytes + self._par.nbytes + kept

    def __repr__(self) -> str:
        hist = f", histograms at {len(self.samples)} steps" if self.samples else ""
        return f"MonitorRecord(layers={len(self._layers)}, params={len(self.params)}, steps={self._n}{hist})"


@dataclass
class _Pending:
    """Device scalars gathered during one step, waiting for the single transfer."""

    act: dict[int, list[tuple[list[torch.Tensor], int, int]]] = field(default_factory=dict)  # (stats, numel, units)
    calls: dict[int, int] = field(default_factory=dict)  # forward calls per layer this step
    out_grad: dict[int, list[torch.Tensor]] = field(default_factory=dict)
    time_grad: dict[int, dict[int, torch.Tensor]] = field(default_factory=dict)  # cells: call -> ‖∂L/∂h_t‖
    samples: dict[tuple[int, str], torch.Tensor] = field(default_factory=dict)
    grads: list[torch.Tensor | None] | None = None  # ‖∂L/∂θ‖ per parameter
    norms: list[torch.Tensor] | None = None  # ‖θ‖ per parameter, before the step

    def empty(self) -> bool:
        return not (self.act or self.out_grad or self.time_grad or self.grads is not None)


def _norms(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """‖t‖₂ of each tensor, fused where PyTorch offers it (as clip_grad_norm_ does)."""
    if not tensors:
        return []
    try:
        return list(torch._foreach_norm(tensors))
    except (AttributeError, RuntimeError):  # mixed devices or dtypes, or an older PyTorch
        return [torch.linalg.vector_norm(t) for t in tensors]


def _to_numpy(values: list[torch.Tensor]) -> np.ndarray:
    """Stack 0-d tensors into one float64 array, with one transfer per (device, dtype)."""
    out = np.empty(len(values), dtype=np.float64)
    groups: dict[tuple[torch.device, torch.dtype], list[int]] = {}
    for i, v in enumerate(values):
        groups.setdefault((v.device, v.dtype), []).append(i)
    for idx in groups.values():
        out[idx] = torch.stack([values[i] for i in idx]).detach().cpu().double().numpy()
    return out


def _tensors(out) -> list[torch.Tensor]:
    """The tensors in a module's output (RNNs return (output, h_n) or (output, (h_n, c_n)))."""
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, PackedSequence):
        return [out.data]
    if isinstance(out, tuple | list):
        return [t for o in out for t in _tensors(o)]
    return []


class GradientMonitor(Callback):
    """Hooks that summarise activations, gradients and updates of a model's layers, step by step.

    A `training.Callback` and a context manager. `layers` picks modules by name instead of
    every supported one. See the module docstring for the three ways to use it.
    """

    def __init__(
        self, model: nn.Module, config: MonitorConfig | None = None, *, layers: Sequence[str] | None = None
    ):
        if not isinstance(model, nn.Module):
            raise TypeError(f"GradientMonitor watches an nn.Module, got {type(model).__name__}")
        self.model = model
        self.config = config or MonitorConfig()
        modules = dict(model.named_modules())
        if layers is not None:
            unknown = [n for n in layers if n not in modules]
            if unknown:
                raise ValueError(f"no module named {unknown} in the model; it has {list(modules)[1:]}")
            chosen = {n: modules[n] for n in layers}
        else:
            chosen = modules
        self._modules: list[nn.Module] = []
        infos: list[LayerInfo] = []
        for name, module in chosen.items():
            info = _layer_info(name, module)
            if info is None and layers is not None:
                raise ValueError(f"{name!r} is a {type(module).__name__}, which the monitor does not support")
            if info is not None:
                self._modules.append(module)
                infos.append(info)
        if not infos:
            raise ValueError(
                f"GradientMonitor found no supported layer in {type(model).__name__}: it watches "
                "Linear, Conv, RNN/LSTM/GRU, normalisation layers and activation modules "
                "(a functional call such as torch.relu(x) inside forward() has no module to hook)"
            )
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self._params = [p for _, p in named]
        self._record = MonitorRecord(infos, [n for n, _ in named])
        pindex = {n: i for i, (n, _) in enumerate(named)}
        self._owned = [[pindex[n] for n in info.params] for info in infos]
        self._handles: list = []
        self._pending = _Pending()
        self._snapshot: list[torch.Tensor] | None = None
        self._sample_idx: dict[tuple[int, torch.device], torch.Tensor] = {}
        self.attach()

    @property
    def record(self) -> MonitorRecord:
        """The summaries so far. Reading it closes a half-finished step (a forward pass without a
        backward, as when train() stops on a non-finite loss) so that step is not lost."""
        self._flush()
        return self._record

    # ---- attaching ------------------------------------------------------------------------------

    @property
    def attached(self) -> bool:
        return bool(self._handles)

    def attach(self) -> GradientMonitor:
        """Register the hooks. A module can carry one monitor at a time."""
        if self.attached:
            raise RuntimeError(f"{self!r} is already attached; a monitor is attached once")
        for module in [self.model, *self._modules]:
            other = _ATTACHED.get(module)
            if other is not None and other is not self and other.attached:
                raise RuntimeError(
                    f"{type(module).__name__} is already watched by {other!r}: detach it first "
                    "(`with GradientMonitor(model) as mon:` detaches on exit)"
                )
        for i, module in enumerate(self._modules):
            self._handles.append(module.register_forward_hook(self._make_forward_hook(i)))
        for module in [self.model, *self._modules]:
            _ATTACHED[module] = self
        return self

    def detach(self) -> None:
        """Remove every hook and drop tensors held for the current step. Safe to call twice."""
        self._flush()
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._snapshot = None
        for module in [self.model, *self._modules]:
            if _ATTACHED.get(module) is self:
                del _ATTACHED[module]

    def __enter__(self) -> GradientMonitor:
        if not self.attached:
            self.attach()
        return self

    def __exit__(self, *exc) -> None:
        self.detach()

    def __repr__(self) -> str:
        state = "attached" if self.attached else "detached"
        return f"GradientMonitor({type(self.model).__name__}, layers={len(self._modules)}, steps={self._record.n_steps}, {state})"

    # ---- hooks ----------------------------------------------------------------------------------

    def _keep_samples(self) -> bool:
        every = self.config.histogram_every
        return every is not None and self._record.n_steps % every == 0

    def _sample(self, t: torch.Tensor) -> torch.Tensor:
        """histogram_size values spread over t by a golden-ratio (Weyl) sequence: no RNG is used."""
        flat, k = t.detach().reshape(-1), self.config.histogram_size
        if flat.numel() <= k:
            return flat.clone()
        key = (flat.numel(), flat.device)
        if key not in self._sample_idx:
            frac = torch.arange(k, dtype=torch.float64) * 0.6180339887498949 % 1.0
            self._sample_idx[key] = (frac * flat.numel()).long().to(flat.device)
        return flat[self._sample_idx[key]]

    def _make_forward_hook(self, i: int):
        info = self._record._layers[i]
        eps = self.config.saturation_eps
        unit_dim = -1 if info.kind == "recurrent" else self.config.unit_dim
        cell = isinstance(self._modules[i], nn.RNNCellBase)

        def hook(module: nn.Module, args, out) -> None:
            if not torch.is_grad_enabled():
                return
            outs = [t for t in _tensors(out) if t.is_floating_point()]
            if not outs:
                return
            if i not in self._record.order:
                self._record.order.append(i)
            y = outs[0].detach()  # (B, ...) the primary output; for RNNs all hidden states
            y = y if y.dtype in (torch.float32, torch.float64) else y.float()
            # A few fused reductions per layer, all left on the device until the step ends.
            mean = y.mean()
            std = torch.linalg.vector_norm(y - mean).div_(math.sqrt(max(y.numel(), 1)))  # population std
            stats, units = [mean, std], 0
            if info.bounds is not None:  # |y - centre| > half-range - eps: near a bound
                lo, hi = info.bounds
                dist = y.abs() if lo == -hi else (y - (lo + hi) / 2).abs_()
                stats.append(dist.gt_((hi - lo) / 2 - eps).sum())
            if info.can_die:  # a unit is alive if it is positive for some example (and position)
                if y.ndim > 1:
                    axis = unit_dim % y.ndim
                    units = y.shape[axis]
                    peak = y.amax(dim=tuple(d for d in range(y.ndim) if d != axis))  # (units,)
                else:
                    units, peak = y.numel(), y.clone()
                stats.append(peak.gt_(0).sum())
            calls = self._pending.act.setdefault(i, [])
            calls.append((stats, y.numel(), units))
            if len(calls) > 64:  # a module called in a long loop: fold the calls to keep memory flat
                calls[:] = [_fold(calls)]
            call = self._pending.calls[i] = self._pending.calls.get(i, -1) + 1
            keep = self._keep_samples()
            if keep and (i, "act") not in self._pending.samples:
                self._pending.samples[(i, "act")] = self._sample(y)
            for j, t in enumerate(outs):
                if t.requires_grad:  # j == 0: h_t of a cell, whose gradient is the through-time one
                    t.register_hook(self._make_grad_hook(i, keep, call if cell and j == 0 else None))

        return hook

    def _make_grad_hook(self, i: int, keep: bool, call: int | None):
        def hook(g: torch.Tensor) -> None:
            norm = torch.linalg.vector_norm(g, dtype=torch.float32)
            self._pending.out_grad.setdefault(i, []).append(norm)
            if call is not None:  # keep the first and the last time step only
                times = self._pending.time_grad.setdefault(i, {})
                times[call] = norm
                if len(times) > 2:
                    del times[sorted(times)[1]]
            if keep and (i, "grad") not in self._pending.samples:
                self._pending.samples[(i, "grad")] = self._sample(g)

        return hook

    # ---- steps ----------------------------------------------------------------------------------

    def _check_attached(self) -> None:
        if not self.attached:
            raise RuntimeError(f"{self!r} is detached: call attach() or use it inside `with`")

    def _collect_grads(self) -> None:
        grads = [p.grad for p in self._params]
        if all(g is None for g in grads) and not self._pending.out_grad:
            raise RuntimeError(
                "GradientMonitor: no gradient to record - no parameter has .grad and no monitored "
                "layer's output received one. Call loss.backward() first (and check that the loss "
                "depends on the model's parameters)."
            )
        with torch.no_grad():
            present = [g for g in grads if g is not None]
            it = iter(_norms([g.to(torch.float32) if g.dtype.itemsize < 4 else g for g in present]))
            self._pending.grads = [None if g is None else next(it) for g in grads]
            self._pending.norms = _norms([p.detach() for p in self._params])

    def on_after_backward(self, step: int, model: nn.Module) -> None:
        """Gradients are ready: take their norms, and copy the parameters to measure the update."""
        self._check_attached()
        self._collect_grads()
        if self.config.track_updates:
            with torch.no_grad():
                self._snapshot = [p.detach().clone() for p in self._params]

    def on_step_end(self, step: int, model: nn.Module, loss: float) -> None:
        """The optimiser has stepped: measure ‖Δθ‖ against the copy, drop the copy, record the step."""
        self._check_attached()
        if self._pending.grads is None:
            raise RuntimeError("on_step_end() without on_after_backward(): call it after loss.backward()")
        deltas = None
        if self._snapshot is not None:
            with torch.no_grad():
                before, self._snapshot = self._snapshot, None
                torch._foreach_sub_(before, [p.detach() for p in self._params])  # before <- θ_old - θ_new
                deltas = _norms(before)
                del before
        self._finalize(loss, deltas)

    def record_step(self, loss: float | torch.Tensor | None = None) -> None:
        """Record activations and gradients of the last forward/backward pass (no optimiser step)."""
        self._check_attached()
        if self._pending.empty() and all(p.grad is None for p in self._params):
            raise RuntimeError("GradientMonitor: nothing to record - run a forward pass and loss.backward() first")
        self._collect_grads()
        self._snapshot = None
        self._finalize(math.nan if loss is None else float(torch.as_tensor(loss).detach()), None)

    def _flush(self) -> None:
        """Record a half-finished step (a forward pass whose loss was not finite, so no backward)."""
        if not self._pending.empty():
            self._finalize(math.nan, None)

    # ---- one transfer per step ------------------------------------------------------------------

    def _finalize(self, loss: float | torch.Tensor, deltas: list[torch.Tensor] | None) -> None:
        pend, self._pending = self._pending, _Pending()
        values: list[torch.Tensor] = []

        def put(ts: Iterable[torch.Tensor]) -> slice:
            start = len(values)
            values.extend(ts)
            return slice(start, len(values))

        act = {i: [(put(s), n, u) for s, n, u in calls] for i, calls in pend.act.items()}
        og = {i: put(ts) for i, ts in pend.out_grad.items()}
        tg = {i: put([ts[min(ts)], ts[max(ts)]]) for i, ts in pend.time_grad.items() if ts}
        present = [i for i, g in enumerate(pend.grads or []) if g is not None]
        sg = put(pend.grads[i] for i in present) if pend.grads else slice(0, 0)
        sn = put(pend.norms or [])
        sd = put(deltas or [])
        v = _to_numpy(values) if values else np.empty(0)

        par = np.full((len(self._params), len(PARAM_STATS)), np.nan)
        par[present, 1] = v[sg]
        if pend.norms:
            par[:, 0] = v[sn]
        if deltas:
            with np.errstate(divide="ignore", invalid="ignore"):
                par[:, 2] = np.where(par[:, 0] > 0, v[sd] / par[:, 0], np.nan)
        lay = np.full((len(self._modules), len(LAYER_STATS)), np.nan)
        for i, calls in act.items():
            info, n = self._record._layers[i], sum(c[1] for c in calls)
            means, stds = np.array([v[s][0] for s, _, _ in calls]), np.array([v[s][1] for s, _, _ in calls])
            w = np.array([c[1] for c in calls], dtype=np.float64) / max(n, 1)
            mean = float(w @ means)  # pooled over calls: exact for one call
            lay[i, 0] = mean
            lay[i, 1] = math.sqrt(max(float(w @ (stds**2 + means**2)) - mean**2, 0.0))
            k = 2
            if info.bounds is not None:
                lay[i, 2] = sum(v[s][k] for s, _, _ in calls) / n
                k += 1
            if info.can_die:
                units = sum(u for _, _, u in calls)
                lay[i, 3] = 1.0 - sum(v[s][k] for s, _, _ in calls) / max(units, 1)
            lay[i, 4] = 0.0 if np.isfinite(means).all() and np.isfinite(stds).all() else 1.0
        for i, s in og.items():
            lay[i, 5] = math.sqrt(float(np.sum(v[s] ** 2)))
        for i, s in tg.items():
            lay[i, 9], lay[i, 10] = v[s]
        lay[:, 11] = 0.0
        for i, c in pend.calls.items():
            lay[i, 11] = c + 1
        for i, own in enumerate(self._owned):
            if own:
                with np.errstate(invalid="ignore"):
                    lay[i, 6] = math.sqrt(np.sum(par[own, 1] ** 2))  # NaN if any own grad is missing
                    lay[i, 7] = math.sqrt(np.sum(par[own, 0] ** 2))
                    if deltas:
                        lay[i, 8] = math.sqrt(np.sum(v[sd][own] ** 2)) / lay[i, 7] if lay[i, 7] > 0 else np.nan
        if pend.samples:
            keys = list(pend.samples)
            flat = _to_numpy_cat([pend.samples[k] for k in keys])
            step = self._record.n_steps
            for (i, what), arr in zip(keys, flat, strict=True):
                self._record.samples.setdefault(step, {}).setdefault(self._record._layers[i].name, {})[what] = arr
        self._record._append(lay, par, float(loss))


def _fold(calls: list[tuple[list[torch.Tensor], int, int]]) -> tuple[list[torch.Tensor], int, int]:
    """Pool the statistics of several forward calls into one entry, on the device."""
    n = torch.tensor([float(c[1]) for c in calls], device=calls[0][0][0].device)
    s = torch.stack([torch.stack(c[0]) for c in calls]).to(n.dtype)  # (calls, stats)
    total = float(n.sum())
    mean = (n * s[:, 0]).sum() / total
    second = (n * (s[:, 1] ** 2 + s[:, 0] ** 2)).sum() / total
    pooled = [mean, (second - mean**2).clamp_min(0).sqrt(), *s[:, 2:].sum(0).unbind(0)]
    return pooled, int(total), sum(c[2] for c in calls)


def _to_numpy_cat(tensors: list[torch.Tensor]) -> list[np.ndarray]:
    """Move 1-d samples to the CPU, one transfer per device, as float32 arrays."""
    out: list[np.ndarray | None] = [None] * len(tensors)
    groups: dict[torch.device, list[int]] = {}
    for i, t in enumerate(tensors):
        groups.setdefault(t.device, []).append(i)
    for idx in groups.values():
        flat = torch.cat([tensors[i].float() for i in idx]).cpu().numpy()
        sizes = np.cumsum([tensors[i].numel() for i in idx])[:-1]
        for i, part in zip(idx, np.split(flat, sizes), strict=True):
            out[i] = part
    return out  # type: ignore[return-value]
