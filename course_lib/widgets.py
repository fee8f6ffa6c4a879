"""An ipywidgets explorer: change depth, activation, initialisation, learning rate and
normalisation, and watch the gradient flow, the per-layer histograms and the diagnosis change.

Each change trains a small MLP on digits for a few steps under a GradientMonitor and
redraws. It needs a running Jupyter kernel to be interactive (JupyterLab); the static
HTML book has none. Without a kernel the module still imports, the widget can still be
built, and `explorer.update(...)` computes and returns the figures, which is how the
tests drive it.

    from course_lib.widgets import build_explorer
    build_explorer(depth=20, activation="sigmoid")   # the last expression of a cell shows it
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import ipywidgets as widgets
import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure

from .data import DigitsSplit, load_digits
from .diagnosis import Finding, diagnose
from .diagnostic_plots import plot_gradient_flow, plot_layer_histograms
from .models import ACTIVATIONS, make_mlp
from .monitor import GradientMonitor, MonitorConfig, MonitorRecord
from .training import train

INITS = ("default", "xavier", "he", "orthogonal", "normal")
NORMS = {"none": None, "batch": "batch", "layer": "layer"}


@dataclass(frozen=True)
class ExplorerSettings:
    """One setting of the explorer's controls (and the fixed parts of the experiment)."""

    depth: int = 10  # hidden layers
    activation: str = "sigmoid"  # one of models.ACTIVATIONS
    init: str = "default"  # one of INITS ("normal" draws N(0, 1))
    lr: float = 0.1  # SGD learning rate
    norm: str = "none"  # "none", "batch" or "layer"
    width: int = 32  # units per hidden layer
    steps: int = 20  # SGD steps of batch_size digits
    batch_size: int = 128  # examples per step
    seed: int = 0  # seeds the initialisation and the batch order

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS or self.init not in INITS or self.norm not in NORMS:
            raise ValueError(
                f"activation in {sorted(ACTIVATIONS)}, init in {INITS}, norm in {list(NORMS)}; got {self}"
            )
        if self.depth < 1 or self.steps < 2 or not self.lr > 0:
            raise ValueError(f"need depth >= 1, steps >= 2 and lr > 0; got {self}")


def run_experiment(settings: ExplorerSettings, data: DigitsSplit | None = None) -> MonitorRecord:
    """Train the MLP the settings describe and return what the monitor recorded."""
    s = settings
    torch.manual_seed(s.seed)  # the initialisation
    gen = torch.Generator().manual_seed(s.seed)  # the batch order
    data = data or load_digits()
    model = make_mlp(
        hidden=(s.width,) * s.depth, activation=s.activation, init=s.init, norm=NORMS[s.norm], init_std=1.0
    )
    # samples at the first and the last step, for the histograms
    config = MonitorConfig(histogram_every=s.steps - 1, histogram_size=1024)
    with GradientMonitor(model, config) as mon:
        train(
            model,
            data.train,
            optimizer=torch.optim.SGD(model.parameters(), lr=s.lr),
            batch_size=s.batch_size,
            epochs=s.steps,
            max_steps=s.steps,
            generator=gen,
            callbacks=[mon],
            progress=False,
        )
    return mon.record


class GradientExplorer(widgets.VBox):
    """Controls, the diagnosis and two figures; `update(**changes)` recomputes and redraws."""

    def __init__(self, settings: ExplorerSettings | None = None, *, draw: bool = True):
        self.settings = settings or ExplorerSettings()
        self.data = load_digits()
        self.record: MonitorRecord | None = None
        self.findings: list[Finding] = []
        self.figures: dict[str, Figure] = {}
        s = self.settings
        style = {"description_width": "initial"}
        self.controls = {
            "depth": widgets.IntSlider(s.depth, 1, 40, description="depth", continuous_update=False),
            "activation": widgets.Dropdown(
                options=sorted(ACTIVATIONS), value=s.activation, description="activation"
            ),
            "init": widgets.Dropdown(options=INITS, value=s.init, description="init"),
            "lr": widgets.FloatLogSlider(
                s.lr,
                base=10,
                min=-4,
                max=1,
                step=0.25,
                description="learning rate",
                continuous_update=False,
                style=style,
            ),
            "norm": widgets.Dropdown(
                options=list(NORMS), value=s.norm, description="normalisation", style=style
            ),
        }
        for w in self.controls.values():
            w.observe(self._on_change, names="value")
        self.summary = widgets.HTML()
        self.output = widgets.Output()
        row = widgets.HBox(list(self.controls.values())[:3])
        row2 = widgets.HBox(list(self.controls.values())[3:])
        super().__init__([row, row2, self.summary, self.output])
        if draw:
            self.update()

    def _on_change(self, change: dict) -> None:
        self.update(**{k: w.value for k, w in self.controls.items()})

    def update(self, **changes: object) -> dict[str, Figure]:
        """Apply changed settings (depth=..., activation=..., ...), rerun, redraw; return the figures."""
        unknown = set(changes) - set(asdict(self.settings))
        if unknown:
            raise TypeError(
                f"unknown settings {sorted(unknown)}; the settings are {list(asdict(self.settings))}"
            )
        self.settings = replace(self.settings, **changes)
        s = self.settings
        self.record = run_experiment(s, self.data)
        self.findings = diagnose(self.record)
        label = f"depth {s.depth}, {s.activation}, {s.init} init, lr {s.lr:.3g}, norm {s.norm}"
        self.figures = {
            "flow": plot_gradient_flow(self.record, title=f"gradient flow: {label}"),
            "histograms": plot_layer_histograms(self.record),
        }
        for fig in self.figures.values():
            plt.close(fig)  # out of pyplot's hands: shown once, in the output area, and still savable
        items = "".join(f"<li><b>{f.kind}</b> ({f.severity}): {f.message}</li>" for f in self.findings)
        self.summary.value = f"<ul>{items}</ul>"
        with self.output:
            from IPython.display import clear_output, display

            clear_output(wait=True)
            for fig in self.figures.values():
                display(fig)
        return self.figures

    def __repr__(self) -> str:
        return f"GradientExplorer({self.settings})"


def build_explorer(*, draw: bool = True, **settings: object) -> GradientExplorer:
    """The explorer widget, starting from ExplorerSettings(**settings). Display it in JupyterLab."""
    return GradientExplorer(ExplorerSettings(**settings), draw=draw)
