"""The record a GradientMonitor fills: per-layer, per-parameter and per-step summaries.

Numbers, never tensors: one row per monitored layer (or parameter) and one column per
statistic, for every recorded step, in float32 arrays that grow by doubling. Every
statistic is addressed by its name (`record.matrix("out_grad_norm")`); NaN means "not
measured for this layer or step" (e.g. `dead` of a tanh layer), never a silent zero.

`LayerInfo` says what a monitored module is (its qualified name, its kind, its type, its
output bounds), and `label` names it for people: `hidden3.linear (Linear)`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

LAYER_STATS = (
    "act_mean",  # mean of the layer's output over every element
    "act_std",  # population std of the output over every element
    "saturated",  # fraction of outputs within saturation_eps of a tanh/sigmoid bound (NaN: no bounds)
    "dead",  # fraction of ReLU units that are zero for every example in the batch (NaN: not a ReLU)
    "nonfinite",  # 0 all finite; else a bit sum of NONFINITE_BITS (where a NaN or inf was seen)
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
    "nonfinite",  # 0 all finite; else a bit sum: 4 θ itself, 8 its gradient ∂L/∂θ
)
STEP_STATS = (
    "loss",  # the loss of the step (NaN when not given, or when it was NaN: see loss_known)
    "loss_known",  # 1 when the loss was given to the monitor, 0 when not
    "backward",  # 1 when a backward pass reached the model in this step, 0 when none did
    "input_nonfinite",  # 1 when the model's input (the first layer's input) held a NaN or inf
)
NONFINITE_BITS = {1: "output", 2: "output gradient", 4: "parameters", 8: "parameter gradients"}

_LAYER = {s: k for k, s in enumerate(LAYER_STATS)}
_PARAM = {s: k for k, s in enumerate(PARAM_STATS)}
_STEP = {s: k for k, s in enumerate(STEP_STATS)}


@dataclass(frozen=True)
class LayerInfo:
    """A monitored module: where it sits and which statistics apply to it."""

    name: str  # dotted name in the model ("hidden3.linear"); "(model)" for the root itself
    kind: str  # "linear", "conv", "recurrent", "norm", "activation" or "custom" (own parameters)
    type_name: str  # the module's class name
    bounds: tuple[float, float] | None  # output bounds of a saturating activation (tanh, sigmoid)
    can_die: bool  # ReLU-like: a unit that outputs 0 for every example is dead
    params: tuple[str, ...]  # full names of the module's own trainable parameters
    root: str = ""  # class name of the model the monitor watches (names its top-level indices)
    frozen: bool = False  # holds parameters, none of them trainable

    @property
    def label(self) -> str:
        """The name a person reads: qualified name and type, e.g. `net.4 (Linear)`. A top-level
        index of a Sequential is qualified by the model's class (`Sequential.4 (Linear)`)."""
        if self.name == "(model)":
            return f"the whole model ({self.type_name})"
        name = f"{self.root}.{self.name}" if self.root and self.name[:1].isdigit() else self.name
        return f"{name} ({self.type_name})"


class MonitorRecord:
    """What a GradientMonitor saw: per-layer and per-parameter statistics for each recorded step.

    `matrix(stat)` gives a (layers × steps) array for a LAYER_STATS name, rows in forward
    order, `param_matrix(stat)` a (params × steps) array, `step_values(stat)` a per-step
    array of a STEP_STATS name.
    """

    def __init__(self, layers: Sequence[LayerInfo], params: Sequence[str]):
        self._layers = list(layers)
        self.params: list[str] = list(params)  # full parameter names, in model order
        self.order: list[int] = []  # indices of layers in the order of their first forward call
        self.samples: dict[int, dict[str, dict[str, np.ndarray]]] = {}  # step -> layer -> act/grad
        self._time_grads: dict[int, dict[str, np.ndarray]] = {}  # step -> cell -> ‖∂L/∂h_t‖, t = 1..T
        self.notes: dict[str, str] = {}  # layer name -> why some of its statistics cannot be measured
        self._step_ids: list[int] = []
        self._lay = np.full((8, len(layers), len(LAYER_STATS)), np.nan, dtype=np.float32)
        self._par = np.full((8, len(params), len(PARAM_STATS)), np.nan, dtype=np.float32)
        self._stp = np.full((8, len(STEP_STATS)), np.nan, dtype=np.float64)
        self._n = 0
        self._drain: Callable[[], None] | None = None  # adds the steps its monitor still holds

    def _sync(self) -> None:
        if self._drain is not None:
            self._drain()

    @property
    def time_grads(self) -> dict[int, dict[str, np.ndarray]]:
        """step -> recurrent cell -> ‖∂L/∂h_t‖ for t = 1..T (MonitorConfig(per_time_step=True))."""
        self._sync()
        return self._time_grads

    @property
    def n_steps(self) -> int:
        self._sync()
        return self._n

    @property
    def steps(self) -> np.ndarray:
        """The step index of each recorded step (the monitor counts steps from 0; with
        MonitorConfig(every=N) they are 0, N, 2N, ...). Columns of `matrix` follow it."""
        self._sync()
        return np.asarray(self._step_ids, dtype=np.int64)

    @property
    def loss(self) -> list[float]:
        """Loss of each recorded step (NaN when not given)."""
        self._sync()
        return self._stp[: self._n, _STEP["loss"]].tolist()

    @property
    def layer_info(self) -> list[LayerInfo]:
        """LayerInfo of every monitored layer, in forward order (unused layers last)."""
        seen = set(self.order)
        return [self._layers[i] for i in self.order + [i for i in range(len(self._layers)) if i not in seen]]

    @property
    def layers(self) -> list[str]:
        return [info.name for info in self.layer_info]

    def label(self, name: str) -> str:
        """`name (Type)` of a monitored layer, or the parameter name itself."""
        info = next((i for i in self._layers if i.name == name), None)
        return info.label if info is not None else name

    def append(
        self,
        layer_rows: dict[str, np.ndarray],
        param_rows: dict[str, np.ndarray],
        step_values: dict[str, float],
        step: int,
    ) -> None:
        """Add one step: (layers,) arrays by LAYER_STATS name (layers in construction order),
        (params,) arrays by PARAM_STATS name, scalars by STEP_STATS name; missing ones are NaN."""
        lay = np.full((len(self._layers), len(LAYER_STATS)), np.nan)
        for stat, values in layer_rows.items():
            lay[:, _LAYER[stat]] = values
        par = np.full((len(self.params), len(PARAM_STATS)), np.nan)
        for stat, values in param_rows.items():
            par[:, _PARAM[stat]] = values
        stp = np.full(len(STEP_STATS), np.nan)
        for stat, value in step_values.items():
            stp[_STEP[stat]] = value
        self._append(lay, par, stp, step)

    def extend(
        self,
        layer_rows: dict[str, np.ndarray],
        param_rows: dict[str, np.ndarray],
        step_values: dict[str, np.ndarray],
        steps: Sequence[int],
    ) -> None:
        """Add several steps at once: (steps, layers) arrays by LAYER_STATS name, (steps, params)
        arrays by PARAM_STATS name, (steps,) arrays by STEP_STATS name; missing ones are NaN."""
        k = len(steps)
        while self._n + k > len(self._lay):  # grow by doubling: amortised O(1) per step
            self._lay = np.concatenate([self._lay, np.full_like(self._lay, np.nan)])
            self._par = np.concatenate([self._par, np.full_like(self._par, np.nan)])
            self._stp = np.concatenate([self._stp, np.full_like(self._stp, np.nan)])
        rows = slice(self._n, self._n + k)
        with np.errstate(over="ignore"):  # beyond float32's range a summary is stored as inf
            for stat, values in layer_rows.items():
                self._lay[rows, :, _LAYER[stat]] = values
            for stat, values in param_rows.items():
                self._par[rows, :, _PARAM[stat]] = values
            for stat, values in step_values.items():
                self._stp[rows, _STEP[stat]] = values
        self._step_ids.extend(steps)
        self._n += k

    def _append(self, lay: np.ndarray, par: np.ndarray, stp: np.ndarray | float, step: int) -> None:
        if self._n == len(self._lay):  # grow by doubling: amortised O(1) per step
            self._lay = np.concatenate([self._lay, np.full_like(self._lay, np.nan)])
            self._par = np.concatenate([self._par, np.full_like(self._par, np.nan)])
            self._stp = np.concatenate([self._stp, np.full_like(self._stp, np.nan)])
        if np.ndim(stp) == 0:  # a bare loss: given, after a backward pass
            stp = np.array([float(stp), 1.0, 1.0, 0.0])
        with np.errstate(over="ignore"):  # beyond float32's range a summary is stored as inf
            self._lay[self._n], self._par[self._n], self._stp[self._n] = lay, par, stp
        self._step_ids.append(step)
        self._n += 1

    def _rows(self, layers: Iterable[str] | None) -> list[int]:
        names = self.layers if layers is None else list(layers)
        index = {info.name: i for i, info in enumerate(self._layers)}
        missing = [n for n in names if n not in index]
        if missing:
            raise KeyError(f"not monitored: {missing}; monitored layers are {self.layers}")
        return [index[n] for n in names]

    def matrix(self, stat: str, layers: Iterable[str] | None = None) -> np.ndarray:
        """(layers × steps) float64 array of a LAYER_STATS statistic, rows in `self.layers` order."""
        if stat not in _LAYER:
            raise KeyError(f"unknown layer statistic {stat!r}; choose from {LAYER_STATS} (or param_matrix)")
        self._sync()
        return self._lay[: self._n, self._rows(layers), _LAYER[stat]].T.astype(np.float64)

    def param_matrix(self, stat: str) -> np.ndarray:
        """(params × steps) float64 array of a PARAM_STATS statistic, rows in `self.params` order."""
        if stat not in _PARAM:
            raise KeyError(f"unknown parameter statistic {stat!r}; choose from {PARAM_STATS}")
        self._sync()
        return self._par[: self._n, :, _PARAM[stat]].T.astype(np.float64)

    def step_values(self, stat: str) -> np.ndarray:
        """(steps,) float64 array of a STEP_STATS value."""
        if stat not in _STEP:
            raise KeyError(f"unknown step statistic {stat!r}; choose from {STEP_STATS}")
        self._sync()
        return self._stp[: self._n, _STEP[stat]].copy()

    def nbytes(self) -> int:
        """Memory held by the summaries (the histogram and time-step samples included)."""
        self._sync()
        kept = sum(a.nbytes for per in self.samples.values() for d in per.values() for a in d.values())
        kept += sum(a.nbytes for per in self._time_grads.values() for a in per.values())
        return self._lay.nbytes + self._par.nbytes + self._stp.nbytes + kept

    def __repr__(self) -> str:
        self._sync()
        hist = f", histograms at {len(self.samples)} steps" if self.samples else ""
        return f"MonitorRecord(layers={len(self._layers)}, params={len(self.params)}, steps={self._n}{hist})"
