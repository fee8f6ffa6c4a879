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
`torch.no_grad()` is ignored). A module called several times in a step (a shared
activation, a recurrent cell) gets one row: its statistics pool all the calls.

Cost: a few reductions per layer (Σy and Σy², from which mean and std follow; counts for
saturated and dead units; ‖∂L/∂h‖²), computed on the tensors' own device and moved to the
CPU once per step in a single transfer; per-parameter norms with fused multi-tensor ops;
one flat copy of the parameters per step for the update ratio, freed at step end. The
record grows by a few kB per step (float32 summaries); `MonitorConfig(every=N)` records
every Nth step only, for long runs. Precision: std comes from E[y²] - E[y]², accurate to
about 1e-7·(mean/std)² relative in float32; update ratios below ~1e-7 (float32's
resolution of θ) read as 0.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

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
    "nonfinite",  # 0 all finite; else a bit sum: 1 output, 2 output gradient, 4 own parameters or their gradients
    "out_grad_norm",  # ‖∂L/∂output‖₂ over the whole batch (NaN: no gradient reached the output)
    "grad_norm",  # ‖∂L/∂θ‖₂ over the layer's own parameters together (NaN: no parameters)
    "param_norm",  # ‖θ‖₂ of the layer's own parameters, before the update
    "update_ratio",  # ‖Δθ‖₂ / ‖θ‖₂ across the optimiser step (NaN: no step recorded)
    "time_grad_first",  # recurrent cells only: ‖∂L/∂h_t‖ at the first time step (first call)
    "time_grad_last",  # recurrent cells only: ‖∂L/∂h_t‖ at the last time step (last call)
    "calls",  # forward calls of the module in the step (T for a recurrent cell; 0: not used)
)
PARAM_STATS = (  # as above, per named parameter
    "param_norm",
    "grad_norm",
    "update_ratio",
    "nonfinite",  # 1.0 when θ or ∂L/∂θ held a non-finite value, else 0.0
)

_SATURATING = {nn.Sigmoid: (0.0, 1.0), nn.Tanh: (-1.0, 1.0), nn.Hardsigmoid: (0.0, 1.0)}
_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU)
_ACTIVATIONS += (nn.Mish, nn.Softplus, nn.Softsign, nn.Hardswish, nn.Hardtanh, *_SATURATING)
_NORMS = (
    nn.modules.batchnorm._NormBase,
    nn.LayerNorm,
    nn.GroupNorm,
    *([nn.RMSNorm] * hasattr(nn, "RMSNorm")),
)
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
    every: int = 1  # record every Nth step; on the others the hooks return at once (cheaper long runs)
    histogram_every: int | None = None  # keep activation/gradient samples every N steps (a multiple of every)
    histogram_size: int = 2048  # values kept per layer and per kept step

    def __post_init__(self) -> None:
        if not 0 < self.saturation_eps < 0.5:
            raise ValueError(f"saturation_eps must be in (0, 0.5), got {self.saturation_eps}")
        if self.every < 1:
            raise ValueError(f"every must be >= 1, got {self.every}")
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
    own = tuple(
        f"{name}.{p}" if name else p for p, t in module.named_parameters(recurse=False) if t.requires_grad
    )
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
        self.samples: dict[
            int, dict[str, dict[str, np.ndarray]]
        ] = {}  # step -> layer -> "act"/"grad" -> values
        self._step_ids: list[int] = []
        self._lay = np.full((8, len(layers), len(LAYER_STATS)), np.nan, dtype=np.float32)
        self._par = np.full((8, len(params), len(PARAM_STATS)), np.nan, dtype=np.float32)
        self._n = 0

    @property
    def n_steps(self) -> int:
        return self._n

    @property
    def steps(self) -> np.ndarray:
        """The step index of each recorded step (the monitor counts steps from 0; with
        MonitorConfig(every=N) they are 0, N, 2N, ...). Columns of `matrix` follow it."""
        return np.asarray(self._step_ids, dtype=np.int64)

    @property
    def layer_info(self) -> list[LayerInfo]:
        """LayerInfo of every monitored layer, in forward order (unused layers last)."""
        seen = set(self.order)
        return [self._layers[i] for i in self.order + [i for i in range(len(self._layers)) if i not in seen]]

    @property
    def layers(self) -> list[str]:
        return [info.name for info in self.layer_info]

    def _append(self, lay: np.ndarray, par: np.ndarray, loss: float, step: int) -> None:
        if self._n == len(self._lay):  # grow by doubling: amortised O(1) per step
            self._lay = np.concatenate([self._lay, np.full_like(self._lay, np.nan)])
            self._par = np.concatenate([self._par, np.full_like(self._par, np.nan)])
        with np.errstate(over="ignore"):  # beyond float32's range a summary is stored as inf
            self._lay[self._n], self._par[self._n] = lay, par
        self.loss.append(loss)
        self._step_ids.append(step)
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


_ACC = ("sum", "sumsq", "saturated", "alive", "out_grad_sq")  # per-layer sums gathered over a step
_N_ACC = len(_ACC)


class _Pending:
    """Device scalars gathered during one step, waiting for the single transfer.

    Every statistic is a sum (of y, of y², of saturated outputs, of live units, of g²), so
    several forward calls of one module in a step combine exactly by adding. Sums of squares
    arrive as norms and are squared in float64 on the CPU, so large activations do not
    overflow float32.
    """

    def __init__(self, n_layers: int):
        self.sums: list[torch.Tensor] = []  # 0-d tensors added into ...
        self.sum_slots: list[int] = []  # ... slot layer * _N_ACC + accumulator
        self.norms: list[torch.Tensor] = []  # 0-d norms whose squares are added into ...
        self.norm_slots: list[int] = []  # ... these slots
        self.numel = [0] * n_layers  # output elements seen per layer
        self.units = [0] * n_layers  # units checked for death per layer
        self.calls = [0] * n_layers  # forward calls per layer
        self.got_grad = [False] * n_layers  # an output gradient arrived
        self.time_grad: dict[int, dict[int, torch.Tensor]] = {}  # cells: call -> ‖∂L/∂h_t‖
        self.samples: dict[tuple[int, str], torch.Tensor] = {}  # (layer, "act"/"grad") -> values
        self.grads: list[torch.Tensor | None] | None = None  # ‖∂L/∂θ‖ per parameter
        self.norms_before: list[torch.Tensor] | None = None  # ‖θ‖ per parameter, before the step

    def empty(self) -> bool:
        return not (self.sums or self.norms or self.grads is not None)

    def fold(self, n_layers: int) -> None:
        """Add pending values slot by slot on their device: a module called in a long loop
        (an RNN cell over thousands of steps) then holds O(layers) tensors, not O(calls)."""
        squares = [n.double() ** 2 for n in self.norms]
        groups: dict[tuple[torch.device, torch.dtype], tuple[list[torch.Tensor], list[int]]] = {}
        for v, slot in zip(self.sums + squares, self.sum_slots + self.norm_slots, strict=True):
            vs, ss = groups.setdefault((v.device, v.dtype), ([], []))
            vs.append(v)
            ss.append(slot)
        self.sums, self.sum_slots, self.norms, self.norm_slots = [], [], [], []
        for (device, dtype), (vs, ss) in groups.items():
            acc = torch.zeros(n_layers * _N_ACC, device=device, dtype=dtype)
            acc.index_add_(0, torch.tensor(ss, device=device), torch.stack(vs))
            used = sorted(set(ss))
            self.sums += list(acc[used].unbind(0))
            self.sum_slots += used


_SAFE = (1e-15, 1e15)  # a float32 norm inside this range lost nothing to under- or overflow of squares


def _norm(t: torch.Tensor) -> torch.Tensor:
    """‖t‖₂ as a 0-d tensor, exact over float32's whole range.

    Squares of entries below ~1e-19 underflow float32 (a vanishing gradient is that small)
    and above ~1e19 overflow, so the sum is taken in float64 where that can happen: always
    on an accelerator (cheap there, and no sync), and on the CPU only when the fast float32
    result comes out near those limits (reading it costs nothing on the CPU).
    """
    if t.dtype == torch.float64:
        return torch.linalg.vector_norm(t)
    if t.device.type != "cpu":
        return torch.linalg.vector_norm(t, dtype=torch.float64)
    n = torch.linalg.vector_norm(t)
    if not _SAFE[0] < float(n) < _SAFE[1]:
        n = torch.linalg.vector_norm(t, dtype=torch.float64)
    return n


def _norms(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """_norm of each tensor, fused where PyTorch offers it (as clip_grad_norm_ does)."""
    if not tensors:
        return []
    if any(t.device.type != "cpu" for t in tensors):
        try:
            return list(torch._foreach_norm(tensors, 2, dtype=torch.float64))
        except (RuntimeError, TypeError):  # tensors on several devices
            return [_norm(t) for t in tensors]
    out = list(torch._foreach_norm(tensors))
    for k, v in enumerate(torch.stack(out).tolist()):
        if not _SAFE[0] < v < _SAFE[1] and tensors[k].dtype != torch.float64:
            out[k] = torch.linalg.vector_norm(tensors[k], dtype=torch.float64)
    return out


class _Snapshot:
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
            for k, n in zip(idx, _norms(views), strict=True):
                out[k] = n
        self.buffers = []
        return out  # type: ignore[return-value]


def _to_numpy(values: list[torch.Tensor]) -> np.ndarray:
    """Stack 0-d tensors into one float64 array, with one transfer per (device, dtype)."""
    try:  # the usual case: one device (dtypes are promoted)
        return torch.stack(values).detach().cpu().double().numpy()
    except RuntimeError:
        pass
    out = np.empty(len(values), dtype=np.float64)
    groups: dict[tuple[torch.device, torch.dtype], list[int]] = {}
    for i, v in enumerate(values):
        groups.setdefault((v.device, v.dtype), []).append(i)
    for idx in groups.values():
        out[idx] = torch.stack([values[i] for i in idx]).detach().cpu().double().numpy()
    return out


def _tensors(out: object) -> list[torch.Tensor]:
    """The tensors in a module's output (RNNs return (output, h_n) or (output, (h_n, c_n)))."""
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, PackedSequence):
        return [out.data]
    if isinstance(out, tuple | list):
        return [t for o in out for t in _tensors(o)]
    return []


_FAST = (torch.float32, torch.float64)


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
        owner = {n: i for i, info in enumerate(infos) for n in info.params}
        self._owner = np.array([owner.get(n, -1) for n, _ in named], dtype=np.int64)  # param -> layer
        self._bounded = np.array([info.bounds is not None for info in infos])
        self._can_die = np.array([info.can_die for info in infos])
        self._seen: set[int] = set()
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._pending = _Pending(len(infos))
        self._snapshot: _Snapshot | None = None
        self._warm: tuple[list[torch.Tensor], list[int]] | None = None  # (‖θ‖, versions) after a step
        self._sample_idx: dict[tuple[int, torch.device], torch.Tensor] = {}
        self._step = 0  # steps seen, recorded or not
        self._start_step()
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
        self._snapshot = self._warm = None
        for module in [self.model, *self._modules]:
            if _ATTACHED.get(module) is self:
                del _ATTACHED[module]

    def __enter__(self) -> GradientMonitor:
        if not self.attached:
            self.attach()
        return self

    def __exit__(self, *exc: object) -> None:
        self.detach()

    def __repr__(self) -> str:
        state = "attached" if self.attached else "detached"
        return (
            f"GradientMonitor({type(self.model).__name__}, layers={len(self._modules)}, "
            f"steps={self._record.n_steps}, {state})"
        )

    # ---- hooks ----------------------------------------------------------------------------------

    def _start_step(self) -> None:
        """Decide whether the coming step is recorded (every `config.every`-th step is)."""
        self._active = self._step % self.config.every == 0
        h = self.config.histogram_every
        self._keep_samples = self._active and h is not None and self._step % h == 0

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

    def _make_forward_hook(self, i: int) -> Callable[[nn.Module, tuple, object], None]:
        info = self._record._layers[i]
        base = i * _N_ACC
        unit_dim = -1 if info.kind == "recurrent" else self.config.unit_dim
        cell = isinstance(self._modules[i], nn.RNNCellBase)
        if info.bounds is not None:
            lo, hi = info.bounds
            centre, reach = (lo + hi) / 2, (hi - lo) / 2 - self.config.saturation_eps

        def hook(module: nn.Module, args: tuple, out: object) -> None:
            if not self._active or not torch.is_grad_enabled():
                return
            if isinstance(out, torch.Tensor):
                outs = [out] if out.is_floating_point() else []
            else:
                outs = [t for t in _tensors(out) if t.is_floating_point()]
            if not outs:
                return
            if i not in self._seen:
                self._seen.add(i)
                self._record.order.append(i)
            p = self._pending
            y = outs[0].detach()  # (B, ...) the primary output; for RNNs all hidden states
            if y.dtype not in _FAST:
                y = y.float()
            # A few reductions per layer, all left on the device until the step ends.
            flat = y.view(-1) if y.is_contiguous() else y.reshape(-1)
            p.sums.append(flat.sum())  # Σy
            p.sum_slots.append(base)
            p.norms.append(_norm(flat))  # sqrt(Σy²)
            p.norm_slots.append(base + 1)
            if info.bounds is not None:  # |y - centre| > half-range - eps: near a bound
                dist = y.abs() if centre == 0 else (y - centre).abs_()
                p.sums.append(dist.gt_(reach).sum())
                p.sum_slots.append(base + 2)
            if info.can_die:  # a unit is alive if it is positive for some example (and position)
                if y.ndim > 1:
                    axis = unit_dim % y.ndim
                    p.units[i] += y.shape[axis]
                    peak = y.amax(dim=tuple(d for d in range(y.ndim) if d != axis))  # (units,)
                else:
                    p.units[i] += y.numel()
                    peak = y
                p.sums.append(torch.count_nonzero(peak))  # ReLU outputs are >= 0: nonzero = alive
                p.sum_slots.append(base + 3)
            p.numel[i] += y.numel()
            call = p.calls[i]
            p.calls[i] += 1
            if len(p.sums) + len(p.norms) > 8192:
                p.fold(len(self._modules))
            keep = self._keep_samples
            if keep and (i, "act") not in p.samples:
                p.samples[(i, "act")] = self._sample(y)
            for j, t in enumerate(outs):
                if t.requires_grad:  # j == 0 of a cell: h_t, whose gradient came back through time
                    grad_hook = self._make_grad_hook(i, keep, call if cell and j == 0 else None)
                    node = t.grad_fn
                    if node is None:
                        t.register_hook(grad_hook)
                    else:  # a pre-hook on the node that made t sees ∂L/∂t, even if t is later changed in place
                        nr = t.output_nr
                        node.register_prehook(
                            lambda grads, f=grad_hook, nr=nr: f(grads[nr]) if grads[nr] is not None else None
                        )

        return hook

    def _make_grad_hook(self, i: int, keep: bool, call: int | None) -> Callable[[torch.Tensor], None]:
        slot = i * _N_ACC + 4

        def hook(g: torch.Tensor) -> None:
            p = self._pending
            n = _norm(g)  # ‖∂L/∂h‖, exact even for a vanishing gradient of 1e-30
            p.norms.append(n)
            p.norm_slots.append(slot)
            p.got_grad[i] = True
            if call is not None:  # keep the first and the last time step only
                times = p.time_grad.setdefault(i, {})
                times[call] = n
                if len(times) > 2:
                    del times[sorted(times)[1]]
            if keep and (i, "grad") not in p.samples:
                p.samples[(i, "grad")] = self._sample(g)

        return hook

    # ---- steps ----------------------------------------------------------------------------------

    def _check_attached(self) -> None:
        if not self.attached:
            raise RuntimeError(f"{self!r} is detached: call attach() or use it inside `with`")

    def _collect_grads(self) -> None:
        grads = [p.grad for p in self._params]
        if all(g is None for g in grads) and not any(self._pending.got_grad):
            raise RuntimeError(
                "GradientMonitor: no gradient to record - no parameter has .grad and no monitored "
                "layer's output received one. Call loss.backward() first (and check that the loss "
                "depends on the model's parameters)."
            )
        with torch.no_grad():
            present = [g.detach() for g in grads if g is not None]
            it = iter(_norms(present))
            self._pending.grads = [None if g is None else next(it) for g in grads]
            warm, self._warm = self._warm, None
            if warm is not None and warm[1] == [p._version for p in self._params]:
                self._pending.norms_before = warm[0]  # ‖θ‖ taken right after the last step, unchanged since
            else:
                self._pending.norms_before = _norms([p.detach() for p in self._params])

    def on_after_backward(self, step: int, model: nn.Module) -> None:
        """Gradients are ready: take their norms, and copy the parameters to measure the update."""
        self._check_attached()
        if not self._active:
            return
        self._collect_grads()
        if self.config.track_updates:
            self._snapshot = _Snapshot(self._params)

    def on_step_end(self, step: int, model: nn.Module, loss: float) -> None:
        """The optimiser has stepped: measure ‖Δθ‖ against the copy, drop the copy, record the step."""
        self._check_attached()
        if not self._active:
            self._step += 1
            self._start_step()
            return
        if self._pending.grads is None:
            raise RuntimeError("on_step_end() without on_after_backward(): call it after loss.backward()")
        snapshot, self._snapshot = self._snapshot, None
        deltas = snapshot.update_norms(self._params) if snapshot is not None else None
        with torch.no_grad():  # ‖θ‖ now, while the parameters are still in cache: next step's ‖θ_old‖
            self._warm = (_norms([p.detach() for p in self._params]), [p._version for p in self._params])
        self._finalize(loss, deltas)

    def record_step(self, loss: float | torch.Tensor | None = None) -> None:
        """Record activations and gradients of the last forward/backward pass (no optimiser step)."""
        self._check_attached()
        if not self._active:
            self._step += 1
            self._start_step()
            return
        if self._pending.empty() and all(p.grad is None for p in self._params):
            raise RuntimeError(
                "GradientMonitor: nothing to record - run a forward pass and loss.backward() first"
            )
        self._collect_grads()
        self._snapshot = None
        self._finalize(math.nan if loss is None else float(torch.as_tensor(loss).detach()), None)

    def _flush(self) -> None:
        """Record a half-finished step (a forward pass whose loss was not finite, so no backward)."""
        if not self._pending.empty():
            self._finalize(math.nan, None)

    # ---- one transfer per step ------------------------------------------------------------------

    def _finalize(self, loss: float | torch.Tensor, deltas: list[torch.Tensor] | None) -> None:
        pend, self._pending = self._pending, _Pending(len(self._modules))
        n_layers, n_params = len(self._modules), len(self._params)
        present = [k for k, g in enumerate(pend.grads or []) if g is not None]
        times = {i: (t[min(t)], t[max(t)]) for i, t in pend.time_grad.items() if t}
        parts = [
            pend.sums,
            pend.norms,
            [pend.grads[k] for k in present] if pend.grads else [],
            pend.norms_before or [],
            deltas or [],
            [t for pair in times.values() for t in pair],
        ]
        v = _to_numpy([t for part in parts for t in part]) if any(parts) else np.empty(0)
        cuts = np.cumsum([len(part) for part in parts])[:-1]
        sums, norms, grad_v, before_v, delta_v, time_v = np.split(v, cuts)

        slots = np.asarray(pend.sum_slots + pend.norm_slots, dtype=np.int64)
        with np.errstate(over="ignore"):
            values = np.concatenate([sums, norms**2])
        acc = np.bincount(slots, weights=values, minlength=n_layers * _N_ACC).reshape(n_layers, _N_ACC)
        numel, units = np.asarray(pend.numel, float), np.asarray(pend.units, float)
        lay = np.full((n_layers, len(LAYER_STATS)), np.nan)
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = acc[:, 0] / numel
            lay[:, 0] = mean
            lay[:, 1] = np.sqrt(np.maximum(acc[:, 1] / numel - mean**2, 0.0))  # E[y²] - E[y]²
            lay[:, 2] = np.where(self._bounded, acc[:, 2] / numel, np.nan)
            lay[:, 3] = np.where(self._can_die & (units > 0), 1.0 - acc[:, 3] / units, np.nan)
            lay[numel == 0, :4] = np.nan
            got = np.asarray(pend.got_grad)
            lay[:, 5] = np.where(got, np.sqrt(acc[:, 4]), np.nan)

        par = np.full((n_params, len(PARAM_STATS)), np.nan)
        par[present, 1] = grad_v
        grad_seen = np.zeros(n_params, bool)
        grad_seen[present] = True
        norm_seen = pend.norms_before is not None
        if norm_seen:
            par[:, 0] = before_v
        measured = grad_seen | norm_seen
        par_bad = (grad_seen & ~np.isfinite(par[:, 1])) | (norm_seen & ~np.isfinite(par[:, 0]))
        par[:, 3] = np.where(measured, par_bad.astype(float), np.nan)
        owned = self._owner >= 0
        owner = self._owner[owned]
        act_bad = (numel > 0) & ~np.isfinite(acc[:, 1])  # ‖y‖ in float64 is finite iff every y is
        grad_bad = got & ~np.isfinite(acc[:, 4])
        own_bad = np.bincount(owner, weights=par_bad[owned], minlength=n_layers) > 0
        any_measured = (
            (numel > 0) | got | (np.bincount(owner, weights=measured[owned], minlength=n_layers) > 0)
        )
        lay[:, 4] = np.where(any_measured, 1.0 * act_bad + 2.0 * grad_bad + 4.0 * own_bad, np.nan)

        def per_layer(x: np.ndarray) -> np.ndarray:  # sqrt(Σ x²) over each layer's own parameters
            with np.errstate(over="ignore"):
                total = np.bincount(owner, weights=np.nan_to_num(x[owned], nan=0.0) ** 2, minlength=n_layers)
            missing = np.bincount(owner, weights=np.isnan(x[owned]), minlength=n_layers) > 0
            return np.where(missing, np.nan, np.sqrt(total))

        has_params = np.bincount(owner, minlength=n_layers) > 0
        lay[has_params, 6] = per_layer(par[:, 1])[has_params]
        lay[has_params, 7] = per_layer(par[:, 0])[has_params]
        if deltas:
            with np.errstate(divide="ignore", invalid="ignore"):
                par[:, 2] = np.where(par[:, 0] > 0, delta_v / par[:, 0], np.nan)
                ratio = per_layer(delta_v) / lay[:, 7]
            lay[has_params, 8] = np.where(lay[:, 7] > 0, ratio, np.nan)[has_params]
        for k, i in enumerate(times):
            lay[i, 9], lay[i, 10] = time_v[2 * k], time_v[2 * k + 1]
        lay[:, 11] = pend.calls
        if pend.samples:
            keys = list(pend.samples)
            step = self._step
            for (i, what), arr in zip(keys, _to_numpy_cat([pend.samples[k] for k in keys]), strict=True):
                self._record.samples.setdefault(step, {}).setdefault(self._record._layers[i].name, {})[
                    what
                ] = arr
        self._record._append(lay, par, float(loss), self._step)
        self._step += 1
        self._start_step()


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
