"""Gradient monitor: hooks that summarise, per layer and per step, activations, gradients and updates.

Hooks on a model's layers (Linear, Conv, RNN/LSTM/GRU and their cells, normalisation layers,
activation modules, and any module of your own that holds parameters) record, for every
training step, numbers rather than tensors, so memory stays flat over long runs:

- activation mean and std of each layer's output;
- saturated fraction of tanh/sigmoid outputs (within `saturation_eps` of a bound, where
  the derivative is nearly zero; Glorot & Bengio 2010);
- dead fraction of ReLU units (zero for every example in the batch);
- gradient norm of each layer's output ‖∂L/∂h_l‖ (the back-propagated signal) and of
  each parameter ‖∂L/∂θ‖;
- for recurrent cells (nn.RNNCell/LSTMCell/GRUCell, called once per time step),
  ‖∂L/∂h_t‖ at the first and the last step: the gradient that travelled back through
  time (Pascanu et al. 2013); with `MonitorConfig(per_time_step=True)`, at every step
  (`record.time_grads`). A fused nn.RNN/LSTM hides its h_t inside one kernel, so only its
  output statistics are recorded (recurrent.RecurrentNet unrolls cells);
- the update-to-data ratio ‖Δθ‖/‖θ‖ of each parameter across one optimiser step
  (healthy near 1e-3; Karpathy, CS231n);
- where a NaN or infinity first showed: the model's input, a layer's output, its output
  gradient, its parameters or their gradients, and (from `train()`) a non-finite loss;
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
layer, a recurrent cell) gets one row: its statistics pool all the calls.

This module holds the hooks; `monitor_record` the record they fill, `monitor_stats` the
arithmetic. Cost, per layer and call: Σy and Σy² (a ReLU's per-unit sums give Σy and its
dead units in one reduction), one more reduction for tanh/sigmoid, and Σ(∂L/∂y)² of its
output gradient; per parameter ‖∂L/∂θ‖ and ‖θ‖, taken in backward while both are in cache
(on an accelerator, one fused call after backward). On the CPU each value is read as it is
made (Σy² by a BLAS dot product, checked against float32's range); on an accelerator it
stays on the device until the step ends, when everything reaches the host in one transfer
per device. The NumPy arithmetic that names the statistics runs for up to 64 steps at a
time; reading the record (or `mon.record`, or detaching) completes it. ‖Δθ‖ is read from
the optimiser where it can be (lr·‖g‖ for plain SGD, lr·‖momentum buffer‖ with momentum)
and from a copy of the parameters around the step otherwise (and in the first step, or
after an update by hand). About 1.2-1.3x a bare step of a 20-layer MLP on one CPU thread
(benchmarks/bench_diagnostics.py). `MonitorConfig(every=N)` records every Nth step only. Precision: std comes from
E[y²] - E[y]², accurate to about 1e-7·(mean/std)² relative in float32.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

from .monitor_record import LAYER_STATS, PARAM_STATS, STEP_STATS, LayerInfo, MonitorRecord
from .monitor_stats import ACC, Layout, Num, Plan, StepSums, UpdateMeter, norms, sumsq, tensors_in
from .training import Callback

__all__ = [
    "LAYER_STATS",
    "PARAM_STATS",
    "STEP_STATS",
    "GradientMonitor",
    "LayerInfo",
    "MonitorConfig",
    "MonitorRecord",
]

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
_FAST = (torch.float32, torch.float64)  # reduced as they are; half precision is widened first
_ATTACHED: weakref.WeakKeyDictionary[nn.Module, GradientMonitor] = weakref.WeakKeyDictionary()
FUSED_RNN_NOTE = (
    "a fused recurrent kernel hides its hidden states h_t: the gradient through time cannot be "
    "measured (course_lib.recurrent.make_rnn unrolls cells, which can)"
)


@dataclass(frozen=True)
class MonitorConfig:
    """What the monitor measures and keeps."""

    saturation_eps: float = 0.01  # a tanh/sigmoid output closer than this to a bound counts as saturated
    unit_dim: int = 1  # axis of a layer's output that indexes units/channels (-1 for (B, T, C) outputs)
    track_updates: bool = True  # measure ‖Δθ‖/‖θ‖ across each optimiser step
    every: int = 1  # record every Nth step; on the others the hooks return at once (cheaper long runs)
    histogram_every: int | None = None  # keep activation/gradient samples every N steps (a multiple of every)
    histogram_size: int = 2048  # values kept per layer and per kept step
    per_time_step: bool = False  # recurrent cells: keep ‖∂L/∂h_t‖ for every t in record.time_grads

    def __post_init__(self) -> None:
        if not 0 < self.saturation_eps < 0.5:
            raise ValueError(f"saturation_eps must be in (0, 0.5), got {self.saturation_eps}")
        if self.every < 1:
            raise ValueError(f"every must be >= 1, got {self.every}")
        if self.histogram_every is not None and self.histogram_every < 1:
            raise ValueError(f"histogram_every must be >= 1 or None, got {self.histogram_every}")
        if self.histogram_size < 1:
            raise ValueError(f"histogram_size must be >= 1, got {self.histogram_size}")


def layer_info(name: str, module: nn.Module, root: str = "") -> LayerInfo | None:
    """What the monitor records for a module; None for a container or a parameter-free module
    of unknown type (Dropout, Flatten, a block of other layers)."""
    kind = next((k for k, types in _KINDS.items() if isinstance(module, types)), None)
    own = dict(module.named_parameters(recurse=False))
    if kind is None and own:
        kind = "custom"  # a layer of your own: weight and bias, or any parameter it uses itself
    if kind is None:
        return None
    bounds = next((b for t, b in _SATURATING.items() if isinstance(module, t)), None)
    nonlin = getattr(module, "nonlinearity", None)  # nn.RNN / nn.RNNCell
    if isinstance(module, nn.Hardtanh) and not isinstance(module, nn.ReLU6):
        bounds = (float(module.min_val), float(module.max_val))
    if kind == "recurrent" and nonlin == "tanh":
        bounds = (-1.0, 1.0)
    can_die = isinstance(module, nn.ReLU | nn.ReLU6) or (kind == "recurrent" and nonlin == "relu")
    trainable = tuple(f"{name}.{p}" if name else p for p, t in own.items() if t.requires_grad)
    frozen = bool(own) and not trainable
    return LayerInfo(name or "(model)", kind, type(module).__name__, bounds, can_die, trainable, root, frozen)


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
        root = type(model).__name__
        self._modules: list[nn.Module] = []
        infos: list[LayerInfo] = []
        for name, module in chosen.items():
            info = layer_info(name, module, root)
            if info is None and layers is not None:
                raise ValueError(
                    f"{name!r} is a {type(module).__name__}, which the monitor does not support "
                    "(a container, or a module without parameters of a type it does not know)"
                )
            if info is not None:
                self._modules.append(module)
                infos.append(info)
        if not infos:
            raise ValueError(
                f"GradientMonitor found no supported layer in {type(model).__name__}: it watches "
                "Linear, Conv, RNN/LSTM/GRU, normalisation layers, activation modules and any module "
                "holding parameters of its own (a functional call such as torch.relu(x) inside "
                "forward() has no module to hook)"
            )
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self._params = [p for _, p in named]
        self._record = MonitorRecord(infos, [n for n, _ in named])
        for info, module in zip(infos, self._modules, strict=True):
            if isinstance(module, nn.RNNBase):
                self._record.notes[info.name] = FUSED_RNN_NOTE
        owner = {n: i for i, info in enumerate(infos) for n in info.params}
        self._layout = Layout(
            n_layers=len(infos),
            bounded=np.array([info.bounds is not None for info in infos]),
            can_die=np.array([info.can_die for info in infos]),
            owner=np.array([owner.get(n, -1) for n, _ in named], dtype=np.int64),  # param -> layer
        )
        self._seen: set[int] = set()
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._pending = StepSums(len(infos))
        self._updates = UpdateMeter(self._params)
        # per parameter, taken in backward while its gradient and θ are in cache: (.grad, its
        # version, θ's version, ‖.grad‖, ‖θ‖), used when both are unchanged at on_after_backward
        self._hot: list[tuple[torch.Tensor, int, int, float, float] | None] = [None] * len(self._params)
        self._sample_idx: dict[tuple[int, torch.device], torch.Tensor] = {}
        self._step = 0  # steps seen, recorded or not
        self._queue: list[tuple[Plan, np.ndarray, float, bool, int]] = []  # closed, not yet summarised
        self._record._drain = _weak_call(self._drain)
        self._start_step()
        self.attach()

    @property
    def record(self) -> MonitorRecord:
        """The summaries so far. Reading it closes a half-finished step (a forward pass without a
        backward) so that step is not lost: the diagnosis reports it as a step without gradients."""
        self._flush()
        self._drain()
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
        for k, param in enumerate(self._params):
            if param.numel() >= _HOT_NUMEL:  # a bias is cheaper in the fused call after backward
                self._handles.append(param.register_post_accumulate_grad_hook(self._make_accumulated_hook(k)))
        self._handles.append(
            register_optimizer_step_pre_hook(lambda opt, a, kw: self._updates.before_step(opt))
        )
        self._handles.append(
            register_optimizer_step_post_hook(lambda opt, a, kw: self._updates.after_step(opt))
        )
        for module in [self.model, *self._modules]:
            _ATTACHED[module] = self
        return self

    def detach(self) -> None:
        """Remove every hook and drop tensors held for the current step. Safe to call twice."""
        self._flush()
        self._drain()
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._hot = [None] * len(self._params)
        self._updates = UpdateMeter(self._params)
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
        unit_dim = -1 if info.kind == "recurrent" else self.config.unit_dim
        cell = isinstance(self._modules[i], nn.RNNCellBase)
        others: dict[int, tuple[int, ...]] = {}  # output ndim -> the axes reduced for a unit's peak
        slots = (i * len(ACC) + ACC.index("sum"), i * len(ACC) + ACC.index("sumsq"))
        bounds, can_die = info.bounds, info.can_die
        if bounds is not None:
            lo, hi = bounds
            centre, reach = (lo + hi) / 2, (hi - lo) / 2 - self.config.saturation_eps
        plain: dict[int, Callable] = {}  # output_nr -> the node pre-hook of a step without samples

        def grad_prehook(nr: int, keep: bool, call: int) -> Callable:
            """A pre-hook on the node that made an output sees ∂L/∂output (even if the output is
            later changed in place). Made once per output slot for the usual case."""
            if not keep and call < 0:
                pre = plain.get(nr)
                if pre is None:

                    def pre(grads: tuple) -> None:
                        g = grads[nr]
                        if g is not None:
                            p = self._pending
                            p.grad_sq.append(sumsq((g.detach() if g.requires_grad else g).reshape(-1)))
                            p.norm_layer.append(i)
                            p.norm_call.append(-1)

                    plain[nr] = pre
                return pre
            on_grad = self._make_grad_hook(i, keep, call)

            def pre_keep(grads: tuple) -> None:
                g = grads[nr]
                if g is not None:
                    on_grad(g)

            return pre_keep

        def hook(module: nn.Module, args: tuple, out: object) -> None:
            if not self._active or not torch.is_grad_enabled():
                return
            if type(out) is torch.Tensor and out.dtype in _FAST:  # the usual case: one tensor
                outs = (out,)
            elif isinstance(out, torch.Tensor) and out.is_floating_point():
                outs = (out,)
            else:
                outs = tuple(t for t in tensors_in(out) if t.is_floating_point())
            if not outs:
                self._record.notes.setdefault(
                    info.name,
                    f"its output is a {type(out).__name__}, not a floating-point tensor: its "
                    "activations and output gradient cannot be measured",
                )
                return
            p = self._pending
            if not p.started:  # the first layer to finish sees the model's input
                p.started = True
                xs = [t for t in tensors_in(args) if t.is_floating_point()]
                if xs:
                    p.input_sq = sumsq(xs[0].detach().reshape(-1))
            if i not in self._seen:
                self._seen.add(i)
                self._record.order.append(i)
            y = outs[0].detach()  # (B, ...) the primary output; for RNNs all hidden states
            if y.dtype not in _FAST:
                y = y.float()
            # A few reductions per layer, all left on the device until the step ends.
            flat = y.view(-1) if y.is_contiguous() else y.reshape(-1)
            cpu = y.is_cpu  # values are read at once there (cheaper than gathering tensors later)
            values = p.values
            if can_die:  # y >= 0: a unit is alive iff its sum over the examples (and positions) is > 0
                dims = others.get(y.ndim)
                if dims is None:
                    axis = unit_dim % y.ndim if y.ndim > 1 else None
                    dims = others[y.ndim] = (
                        () if axis is None else tuple(d for d in range(y.ndim) if d != axis)
                    )
                if y.numel():  # these sums also give Σy
                    col = y.sum(dim=dims) if dims else y
                    p.cols.append(col if col.ndim == 1 else col.reshape(-1))
                    p.col_layer.append(i)
                values.append(sumsq(flat))  # Σy² (float64 where float32 would over- or underflow)
                p.slots.append(slots[1])
            else:
                total = flat.sum()
                values.append(total.item() if cpu else total)
                values.append(sumsq(flat))
                p.slots.extend(slots)
            if bounds is not None:  # |y - centre| > half-range - eps: near a bound
                dist = y.abs() if centre == 0 else (y - centre).abs_()
                count = dist.gt_(reach).sum()
                p.add(i, "saturated", count.item() if cpu else count)
            if len(values) >= 8192:  # a module called in a loop of thousands of steps
                p.fold_values()
            p.numel[i] += y.numel()
            call = p.calls[i]
            p.calls[i] += 1
            keep = self._keep_samples
            if keep and (i, "act") not in p.samples:
                p.samples[(i, "act")] = self._sample(y)
            for j, t in enumerate(outs):
                if t.requires_grad:  # j == 0 of a cell: h_t, whose gradient came back through time
                    p.expect_grad = True
                    node = t.grad_fn
                    if node is None:
                        t.register_hook(self._make_grad_hook(i, keep, call if cell and j == 0 else -1))
                    else:
                        node.register_prehook(
                            grad_prehook(t.output_nr, keep, call if cell and j == 0 else -1)
                        )

        return hook

    def _make_grad_hook(self, i: int, keep: bool, call: int) -> Callable[[torch.Tensor], None]:
        if not keep:

            def hook(g: torch.Tensor) -> None:
                self._pending.add_grad(i, call, g)  # its norm², queued on the device

            return hook

        def hook_keep(g: torch.Tensor) -> None:
            p = self._pending
            p.add_grad(i, call, g)
            if (i, "grad") not in p.samples:
                p.samples[(i, "grad")] = self._sample(g)

        return hook_keep

    # ---- steps ----------------------------------------------------------------------------------

    def _check_attached(self) -> None:
        if not self.attached:
            raise RuntimeError(f"{self!r} is detached: call attach() or use it inside `with`")

    def _make_accumulated_hook(self, k: int) -> Callable[[torch.Tensor], None]:
        def hook(param: torch.Tensor) -> None:
            """∂L/∂θ has just been written and θ just read by the backward pass: their norms now
            cost a read from cache rather than from memory after the backward pass."""
            g = param.grad
            if not self._active or g is None or not g.is_cpu or g.requires_grad:
                return  # on an accelerator the fused norms after backward are as cheap
            gsq, psq = sumsq(g.reshape(-1)), sumsq(param.detach().reshape(-1))
            self._hot[k] = (g, g._version, param._version, math.sqrt(gsq), math.sqrt(psq))  # type: ignore[arg-type]

        return hook

    def _param_norms(self, hot: list | None = None) -> list[Num]:
        """‖θ‖ per parameter: taken in the backward pass when unchanged since, else now."""
        hot = hot or [None] * len(self._params)
        out: list[Num | None] = [None] * len(self._params)
        cold = []
        for k, (p, h) in enumerate(zip(self._params, hot, strict=True)):
            if h is not None and h[2] == p._version:
                out[k] = h[4]
            else:
                cold.append(k)
        if cold:
            with torch.no_grad():
                for k, v in zip(cold, norms([self._params[k] for k in cold]), strict=True):
                    out[k] = v
        return out  # type: ignore[return-value]

    def _collect_grads(self) -> None:
        grads = [p.grad for p in self._params]
        pend = self._pending
        if all(g is None for g in grads) and not pend.backward_seen():
            raise RuntimeError(
                "GradientMonitor: no gradient to record - no parameter has .grad and no monitored "
                "layer's output received one. Call loss.backward() first (and check that the loss "
                "depends on the model's parameters)."
            )
        if pend.expect_grad and not pend.backward_seen():
            grads = [None] * len(grads)  # a forward pass without backward: .grad is left from before
        hot, self._hot = self._hot, [None] * len(self._params)
        gn: list[Num | None] = [None] * len(grads)
        cold = []
        for k, (g, h) in enumerate(zip(grads, hot, strict=True)):
            if g is None:
                continue
            if h is not None and h[0] is g and h[1] == g._version:
                gn[k] = h[3]
            else:
                cold.append(k)
        if cold:
            with torch.no_grad():
                for k, v in zip(cold, norms([grads[k] for k in cold]), strict=True):  # type: ignore[misc]
                    gn[k] = v
        pend.param_grads = gn
        pend.norms_before = self._param_norms(hot)

    def on_after_backward(self, step: int, model: nn.Module) -> None:
        """Gradients are ready: take their norms, and copy the parameters to measure the update."""
        self._check_attached()
        if not self._active:
            return
        self._collect_grads()
        if self.config.track_updates:
            self._updates.arm(self._pending.param_grads)

    def on_step_end(self, step: int, model: nn.Module, loss: float) -> None:
        """The optimiser has stepped: measure ‖Δθ‖ against the copy, drop the copy, record the step."""
        self._check_attached()
        if not self._active:
            self._next_step()
            return
        if self._pending.param_grads is None:
            raise RuntimeError("on_step_end() without on_after_backward(): call it after loss.backward()")
        deltas = self._updates.result()
        self._finalize(loss, deltas)

    def on_nonfinite_loss(self, step: int, model: nn.Module, loss: float) -> None:
        """train() stops: the loss of this step is not finite. Record the step with that loss."""
        self._check_attached()
        if not self._active:
            self._next_step()
            return
        self._updates.armed = False
        self._pending.norms_before = self._param_norms()  # were the parameters already non-finite?
        self._finalize(loss, None)

    def record_step(self, loss: float | torch.Tensor | None = None) -> None:
        """Record activations and gradients of the last forward/backward pass (no optimiser step)."""
        self._check_attached()
        if not self._active:
            self._next_step()
            return
        if self._pending.empty() and all(p.grad is None for p in self._params):
            raise RuntimeError(
                "GradientMonitor: nothing to record - run a forward pass and loss.backward() first"
            )
        self._collect_grads()
        self._updates.armed = False
        self._finalize(None if loss is None else float(torch.as_tensor(loss).detach()), None)

    def _flush(self) -> None:
        """Record a half-finished step (a forward pass that no backward pass followed)."""
        if not self._pending.empty():
            self._finalize(None, None)

    def _next_step(self) -> None:
        self._step += 1
        self._start_step()

    # ---- one transfer per step ------------------------------------------------------------------

    def _finalize(self, loss: float | None, deltas: tuple[list[Num | None], np.ndarray] | None) -> None:
        """Close the step: its values go to the host now, in one transfer per device; the NumPy
        arithmetic that turns them into statistics runs for many steps at once (`_drain`)."""
        pend, self._pending = self._pending, StepSums(len(self._modules))
        plan, packed = pend.pack(self._layout, deltas)
        if pend.samples:
            names = [info.name for info in self._record._layers]
            keys = list(pend.samples)
            for (i, what), arr in zip(keys, _to_numpy_cat([pend.samples[k] for k in keys]), strict=True):
                self._record.samples.setdefault(self._step, {}).setdefault(names[i], {})[what] = arr
        self._queue.append(
            (plan, packed, math.nan if loss is None else float(loss), loss is not None, self._step)
        )
        if len(self._queue) >= _BATCH:
            self._drain()
        self._next_step()

    def _drain(self) -> None:
        """Summarise the closed steps still held, runs of steps of one structure together."""
        queue, self._queue = self._queue, []
        names = [info.name for info in self._record._layers]
        start = 0
        while start < len(queue):
            plan = queue[start][0]
            stop = start + 1
            while stop < len(queue) and queue[stop][0] is plan:
                stop += 1
            run = queue[start:stop]
            lay, par, stp, times = plan.summarise(np.stack([q[1] for q in run]))
            stp["loss"] = np.array([q[2] for q in run])
            stp["loss_known"] = np.array([float(q[3]) for q in run])
            steps = [q[4] for q in run]
            if self.config.per_time_step:
                for step, series in zip(steps, times, strict=True):
                    for i, t in series.items():
                        self._record._time_grads.setdefault(step, {})[names[i]] = t.astype(np.float32)
            self._record.extend(lay, par, stp, steps)
            start = stop


_HOT_NUMEL = 4096  # parameters this large get their norms in backward, from cache
_BATCH = 64  # closed steps held before their statistics are computed (reading the record drains them)


def _weak_call(method: Callable[[], None]) -> Callable[[], None]:
    """Call a bound method while its object lives (a record does not keep its monitor alive)."""
    ref = weakref.WeakMethod(method)

    def call() -> None:
        m = ref()
        if m is not None:
            m()

    return call


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
