"""The monitor's arithmetic: reductions gathered during a step, one transfer that packs the
step into a vector on the host, and the batched NumPy that turns such vectors into named
statistics.

During a step the hooks gather a few sums per layer output (Σy, Σy², a count of saturated
outputs, a ReLU's per-unit sums over the batch) and Σ(∂L/∂h)² of the gradient that reaches
each output; the parameters' and their gradients' norms come from the backward pass (CPU)
or one fused call (`torch._foreach_norm`, as `clip_grad_norm_` does). On the CPU each value
is read as a float when it is made (a float32 Σy² is a BLAS dot product, recomputed in
float64 outside 1e-36..1e36); on an accelerator values stay on the device. `StepSums.pack`
moves a closed step to the host in one transfer per device as one float64 vector, with the
`Plan` that reads it (built once per structure of a step: which layers, calls and
parameters it holds). `Plan.summarise` turns a stack of such vectors, many steps at once,
into per-layer, per-parameter and per-step values addressed by the names of
`monitor_record.LAYER_STATS`, `PARAM_STATS` and `STEP_STATS`.

Every per-layer value is a sum (of y, of y², of saturated outputs, of ‖∂L/∂h‖²), so
several forward calls of one module in a step (a shared layer, a recurrent cell) combine
exactly by adding. Sums of squares over- or underflowing float32 are taken in float64, so a
large activation does not overflow and a vanishing gradient of 1e-30 does not underflow to
zero.
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


_SAFE_SQ = (_SAFE[0] ** 2, _SAFE[1] ** 2)

Num = torch.Tensor | float  # a value on the host (a float) or still on its device (a 0-d tensor)


def sumsq(t: torch.Tensor) -> Num:
    """Σt² of a 1-d tensor, the same number as `norm(t)²`, in one kernel where it can be.

    On the CPU a float32 dot product (BLAS, about twice as fast as a norm) is exact to rounding
    between 1e-36 and 1e36 and taken in float64 outside; float64 is dotted as it is. The value
    is read anyway for that check, so the CPU returns it as a float: no tensor to gather later.
    On an accelerator the float64 norm, squared, stays there: nothing is read back to the host."""
    if not t.is_cpu:
        return torch.linalg.vector_norm(t, dtype=torch.float64).square_()
    if t.dtype not in _FLOATS:  # half precision: its squares overflow at 256
        t = t.float()
    q = torch.dot(t, t).item()
    if not _SAFE_SQ[0] < q < _SAFE_SQ[1] and t.dtype == torch.float32:
        t = t.double()
        q = torch.dot(t, t).item()
    return q


_FLOATS = (torch.float32, torch.float64)


def norms(tensors: list[torch.Tensor]) -> list[Num]:
    """`norm` of each tensor, in one fused multi-tensor call where PyTorch offers it. On the
    CPU the values are read for the range check anyway and come back as floats."""
    if not tensors:
        return []
    if not tensors[0].is_cpu:
        try:
            return list(torch._foreach_norm(tensors, 2, dtype=torch.float64))
        except (RuntimeError, TypeError):  # tensors on several devices
            return [norm(t) for t in tensors]
    try:
        out = torch._foreach_norm(tensors)
    except (RuntimeError, TypeError):  # a CPU tensor among accelerator tensors
        return [norm(t) for t in tensors]
    values: list[Num] = torch.stack(out).tolist()
    for k, v in enumerate(values):
        if not _SAFE[0] < v < _SAFE[1] and tensors[k].dtype != torch.float64:
            values[k] = torch.linalg.vector_norm(tensors[k], dtype=torch.float64).item()
    return values


def host_values(values: list[Num]) -> np.ndarray:
    """Floats and 0-d tensors into one float64 array, one transfer per device for the tensors."""
    idx = [k for k, v in enumerate(values) if type(v) is not float]
    if not idx:
        return np.array(values, dtype=np.float64)
    out = np.array([math.nan if type(v) is not float else v for v in values], dtype=np.float64)
    out[idx] = to_numpy([values[k] for k in idx], scalars=True)  # type: ignore[misc]
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
    plans: dict[tuple, Plan] = field(default_factory=dict)  # one per structure of a step


@dataclass
class StepSums:
    """Values of one step waiting for the single transfer: floats where they were read already
    (on the CPU), 0-d or 1-d tensors on their device otherwise (an accelerator)."""

    n_layers: int
    values: list[Num] = field(default_factory=list)  # sums (Σy, Σy², a count) ...
    slots: list[int] = field(default_factory=list)  # ... added into slot layer * len(ACC) + ACC index
    cols: list[torch.Tensor] = field(default_factory=list)  # (units,) Σ over the batch, ReLU-like layers
    col_layer: list[int] = field(default_factory=list)
    grad_sq: list[Num] = field(default_factory=list)  # ‖∂L/∂output‖² of each arrival
    norm_layer: list[int] = field(default_factory=list)
    norm_call: list[int] = field(default_factory=list)  # the call of a recurrent cell (its h_t), else -1
    folded: list[torch.Tensor] = field(default_factory=list)  # (layers * len(ACC),) float64 partial sums
    folded_host: np.ndarray | None = None  # the same, for values that were floats already
    numel: list[int] = field(default_factory=list)  # output elements seen per layer
    calls: list[int] = field(default_factory=list)  # forward calls per layer
    expect_grad: bool = False  # some monitored output required a gradient
    started: bool = False  # a monitored layer has finished a forward call in this step
    input_sq: Num | None = None  # ‖x‖² of the model's input (the first layer's input)
    samples: dict[tuple[int, str], torch.Tensor] = field(default_factory=dict)  # (layer, act/grad)
    param_grads: list[Num | None] | None = None  # ‖∂L/∂θ‖ per parameter (None: no .grad)
    norms_before: list[Num] | None = None  # ‖θ‖ per parameter, before the step

    def __post_init__(self) -> None:
        self.numel = [0] * self.n_layers
        self.calls = [0] * self.n_layers

    def empty(self) -> bool:
        return not (
            self.values
            or self.cols
            or self.folded
            or self.folded_host is not None
            or self.grad_sq
            or self.param_grads is not None
        )

    def forward_seen(self) -> bool:
        return self.started

    def backward_seen(self) -> bool:
        return bool(self.grad_sq)

    def add(self, layer: int, acc: str, value: Num) -> None:
        self.values.append(value)
        self.slots.append(layer * len(ACC) + _ACC[acc])

    def fold_values(self) -> None:
        """Add the waiting values slot by slot (float64), floats on the host and tensors on their
        devices, so that O(layers) values are held however often a module is called."""
        n = self.n_layers * len(ACC)
        groups: dict[torch.device, list[int]] = {}
        host = []
        for k, v in enumerate(self.values):
            if type(v) is float:
                host.append(k)
            else:
                groups.setdefault(v.device, []).append(k)  # type: ignore[union-attr]
        if host:
            part = np.bincount(
                np.asarray([self.slots[k] for k in host], np.int64),
                np.asarray([self.values[k] for k in host], np.float64),
                minlength=n,
            )
            self.folded_host = part if self.folded_host is None else self.folded_host + part
        for device, idx in groups.items():
            vals = torch.stack([self.values[k].double() for k in idx])  # type: ignore[union-attr]
            acc = torch.zeros(n, dtype=torch.float64, device=device)
            acc.index_add_(0, torch.tensor([self.slots[k] for k in idx], device=device), vals)
            self.folded.append(acc)
        self.values, self.slots = [], []

    def add_grad(self, layer: int, call: int, g: torch.Tensor) -> None:
        """‖∂L/∂output‖² now: holding the gradient itself until the step ends would keep autograd
        from reusing its buffers (measured: a backward pass several times slower to allocate)."""
        self.grad_sq.append(sumsq(g.detach().reshape(-1)))
        self.norm_layer.append(layer)
        self.norm_call.append(call)

    def pack(
        self, layout: Layout, deltas: tuple[list[Num | None], np.ndarray] | None
    ) -> tuple[Plan, np.ndarray]:
        """The step as one float64 vector on the host (one transfer per device), and the `Plan`
        that reads it. Steps of the same structure share a plan and are summarised together."""
        pg = self.param_grads or []
        present = tuple(k for k, g in enumerate(pg) if g is not None)
        before = self.norms_before or []
        moved = [] if deltas is None else [t for t in deltas[0] if t is not None]
        inp = [] if self.input_sq is None else [self.input_sq]
        scalars = [*self.values, *self.grad_sq, *(pg[k] for k in present), *before, *moved, *inp]
        blocks = [host_values(scalars)]  # type: ignore[arg-type]
        if self.cols:  # 1-d and detached already
            try:  # one device: one transfer (dtypes are promoted)
                blocks.append(torch.cat(self.cols).cpu().numpy())
            except RuntimeError:
                blocks.append(to_numpy(self.cols))
        if self.folded:
            blocks.append(to_numpy(self.folded))
        if self.folded_host is not None:
            blocks.append(self.folded_host)
        backward = self.backward_seen() or (not self.expect_grad and bool(present))
        blocks.append(np.array([*self.numel, *self.calls, float(backward)], dtype=np.float64))
        if deltas is not None:
            blocks.append(deltas[1])
        key = (
            tuple(self.slots),
            tuple(self.norm_layer),
            tuple(self.norm_call),
            present,
            len(before),
            None if deltas is None else tuple(t is not None for t in deltas[0]),
            len(inp),
            tuple(self.col_layer),
            tuple(t.numel() for t in self.cols),
            len(self.folded) + (self.folded_host is not None),
        )
        plan = layout.plans.get(key)
        if plan is None:
            if len(layout.plans) >= 64:  # structures that keep changing: keep the newest few
                layout.plans.clear()
            plan = layout.plans[key] = Plan(layout, *key)
        return plan, np.concatenate(blocks)


class Groups:
    """Sums of the columns of a (steps, m) array over n groups, one index per column: a
    `np.bincount` along axis 1. The columns of a group are added in their order; a NaN or an
    infinity stays within its own group."""

    def __init__(self, index: np.ndarray | list[int], n: int):
        index = np.asarray(index, dtype=np.int64)
        self.order: np.ndarray | None = np.argsort(index, kind="stable")
        self.targets, self.starts = np.unique(index[self.order], return_index=True)
        self.n, self.empty = n, not index.size
        if np.array_equal(self.order, np.arange(index.size)):
            self.order = None  # already grouped: no copy of the columns needed

    def __call__(self, w: np.ndarray) -> np.ndarray:
        out = np.zeros((w.shape[0], self.n))
        if not self.empty:
            w = w if self.order is None else np.take(w, self.order, axis=1)
            out[:, self.targets] = np.add.reduceat(w, self.starts, axis=1)
        return out


class Plan:
    """Where each value sits in a packed step vector, and the index arithmetic that turns a
    (steps, length) stack of such vectors into named statistics. Built once per structure."""

    def __init__(
        self,
        layout: Layout,
        slots: tuple[int, ...],
        norm_layer: tuple[int, ...],
        norm_call: tuple[int, ...],
        present: tuple[int, ...],
        n_before: int,
        moved: tuple[bool, ...] | None,
        n_input: int,
        col_layer: tuple[int, ...],
        col_sizes: tuple[int, ...],
        n_folded: int,
    ):
        n_layers, n_params, n_acc = layout.n_layers, len(layout.owner), layout.n_layers * len(ACC)
        self.layout, self.present, self.n_before, self.moved = (
            layout,
            np.array(present, np.int64),
            n_before,
            moved,
        )
        sizes = [len(slots), len(norm_layer), len(present), n_before, sum(moved or ()), n_input]
        sizes += [sum(col_sizes), n_folded * n_acc, 2 * n_layers + 1, n_params if moved is not None else 0]
        ends = np.cumsum(sizes)
        self.parts = [slice(a, b) for a, b in zip([0, *ends[:-1]], ends, strict=True)]
        self.length = int(ends[-1])
        grad_slots = np.asarray(norm_layer, np.int64) * len(ACC) + _ACC["out_grad_sq"]
        self.acc = Groups(np.concatenate([np.asarray(slots, np.int64), grad_slots]), n_acc)
        self.n_folded = n_folded
        self.got = np.bincount(np.asarray(norm_layer, np.int64), minlength=n_layers) > 0
        self.cols: tuple[Groups, Groups, np.ndarray] | None = None
        if col_layer:
            starts = np.concatenate([[0], np.cumsum(col_sizes)[:-1]]).astype(np.int64)
            per_col = np.repeat(np.arange(len(col_sizes)), col_sizes)
            layer_c = np.asarray(col_layer, np.int64)
            self.col_starts = starts
            self.cols = (
                Groups(layer_c[per_col] * len(ACC) + _ACC["sum"], n_acc),  # Σy of each layer
                Groups(layer_c[per_col], n_layers),  # alive units of each layer
                np.bincount(layer_c, weights=np.asarray(col_sizes, float), minlength=n_layers),
            )
        owned = layout.owner >= 0
        self.owned, self.by_layer = owned, Groups(layout.owner[owned], n_layers)
        self.has_params = np.bincount(layout.owner[owned], minlength=n_layers) > 0
        self.cells: list[tuple[int, np.ndarray, np.ndarray, int]] = []  # layer, arrivals, calls, T
        calls = np.asarray(norm_call, np.int64)
        layers = np.asarray(norm_layer, np.int64)
        for layer in np.unique(layers[calls >= 0]):
            mine = np.flatnonzero((layers == layer) & (calls >= 0))
            self.cells.append((int(layer), mine, calls[mine], int(calls[mine].max()) + 1))

    def summarise(
        self, v: np.ndarray
    ) -> tuple[
        dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray], list[dict[int, np.ndarray]]
    ]:
        """(layer rows, parameter rows, step values, per-cell ‖∂L/∂h_t‖ series) of (steps, length)
        packed vectors: (steps, layers) arrays by LAYER_STATS name, (steps, params) arrays by
        PARAM_STATS name, (steps,) arrays by STEP_STATS name, one {cell: series} per step."""
        lo = self.layout
        n_layers, n_params, k = lo.n_layers, len(lo.owner), v.shape[0]
        values, gsq, grad_v, before_v, delta_v, input_v, col_v, folded_v, counts, scale = (
            v[:, part] for part in self.parts
        )
        numel, calls, backward = counts[:, :n_layers], counts[:, n_layers:-1], counts[:, -1]
        acc = self.acc(np.concatenate([values, gsq], axis=1))
        units, alive = np.zeros(n_layers), np.zeros((k, n_layers))
        if self.cols is not None:  # ReLU-like outputs are >= 0: Σ over the batch is nonzero iff alive
            col_sum, col_alive, units = self.cols
            acc += col_sum(col_v)
            alive = col_alive((col_v != 0).astype(np.float64))
        for j in range(self.n_folded):
            acc += folded_v[:, j * acc.shape[1] : (j + 1) * acc.shape[1]]
        acc = acc.reshape(k, n_layers, len(ACC))
        col = {name: acc[:, :, j] for name, j in _ACC.items()}
        got = self.got

        lay: dict[str, np.ndarray] = {}
        with np.errstate(divide="ignore", invalid="ignore"):
            seen = numel > 0
            mean = col["sum"] / numel
            lay["act_mean"] = np.where(seen, mean, np.nan)
            std = np.sqrt(np.maximum(col["sumsq"] / numel - mean**2, 0.0))  # E[y²] - E[y]²
            lay["act_std"] = np.where(seen, std, np.nan)
            lay["saturated"] = np.where(seen & lo.bounded, col["saturated"] / numel, np.nan)
            lay["dead"] = np.where(seen & lo.can_die & (units > 0), 1.0 - alive / units, np.nan)
            lay["out_grad_norm"] = np.where(got, np.sqrt(col["out_grad_sq"]), np.nan)

        par: dict[str, np.ndarray] = {}
        grad_seen = np.zeros(n_params, bool)
        grad_seen[self.present] = True
        par["grad_norm"] = np.full((k, n_params), np.nan)
        par["grad_norm"][:, self.present] = grad_v
        norm_seen = self.n_before > 0
        par["param_norm"] = before_v if norm_seen else np.full((k, n_params), np.nan)
        theta_bad = norm_seen & ~np.isfinite(par["param_norm"])
        grad_bad = grad_seen & ~np.isfinite(par["grad_norm"])
        par["nonfinite"] = np.where(grad_seen | norm_seen, 4.0 * theta_bad + 8.0 * grad_bad, np.nan)

        owned, by_layer, has_params = self.owned, self.by_layer, self.has_params

        def per_layer(x: np.ndarray) -> np.ndarray:  # sqrt(Σ x²) over each layer's own parameters
            with np.errstate(over="ignore"):
                total = by_layer(np.nan_to_num(x[:, owned], nan=0.0) ** 2)
            missing = by_layer(np.isnan(x[:, owned]).astype(np.float64)) > 0
            return np.where(missing | ~has_params, np.nan, np.sqrt(total))

        def any_of(mask: np.ndarray) -> np.ndarray:  # per layer: some own parameter has the flag
            return by_layer(np.broadcast_to(mask, (k, n_params))[:, owned].astype(np.float64)) > 0

        lay["grad_norm"] = per_layer(par["grad_norm"])
        lay["param_norm"] = per_layer(par["param_norm"])
        if self.moved is not None:
            moved = np.array(self.moved, bool)
            delta = scale.copy()
            delta[:, moved] *= delta_v  # ‖Δθ‖ per parameter
            with np.errstate(divide="ignore", invalid="ignore"):
                pn = par["param_norm"]
                par["update_ratio"] = np.where(pn > 0, delta / pn, np.nan)
                ratio = per_layer(delta) / lay["param_norm"]
            lay["update_ratio"] = np.where(has_params & (lay["param_norm"] > 0), ratio, np.nan)

        act_bad = (numel > 0) & ~np.isfinite(col["sumsq"])  # Σy² in float64 is finite iff every y is
        out_grad_bad = got & ~np.isfinite(col["out_grad_sq"])
        flags = 1.0 * act_bad + 2.0 * out_grad_bad + 4.0 * any_of(theta_bad) + 8.0 * any_of(grad_bad)
        measured = (numel > 0) | got | any_of(grad_seen | norm_seen)
        lay["nonfinite"] = np.where(measured, flags, np.nan)
        lay["calls"] = calls

        times: list[dict[int, np.ndarray]] = [{} for _ in range(k)]
        first, last = np.full((k, n_layers), np.nan), np.full((k, n_layers), np.nan)
        for layer, arrivals, at, length in self.cells:
            series = np.full((k, length), np.nan)
            series[:, at] = np.sqrt(gsq[:, arrivals])
            first[:, layer], last[:, layer] = series[:, 0], series[:, -1]
            for row in range(k):
                times[row][layer] = series[row]
        lay["time_grad_first"], lay["time_grad_last"] = first, last
        with np.errstate(invalid="ignore"):
            bad_input = ~np.isfinite(input_v[:, 0]) if input_v.shape[1] else np.zeros(k, bool)
        stp = {"backward": backward, "input_nonfinite": bad_input.astype(np.float64)}
        return lay, par, stp, times
