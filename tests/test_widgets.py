"""course_lib.widgets: the explorer imports and builds without a kernel, and its update function
recomputes the record, the diagnosis and both figures."""

from __future__ import annotations

import ipywidgets as widgets
import pytest
from matplotlib.figure import Figure

from course_lib.widgets import ExplorerSettings, GradientExplorer, build_explorer, run_experiment


@pytest.fixture(scope="module")
def explorer() -> GradientExplorer:
    return build_explorer(depth=4, width=16, steps=4, draw=False)


def test_builds_a_widget_with_the_five_controls(explorer):
    assert isinstance(explorer, widgets.VBox)
    assert set(explorer.controls) == {"depth", "activation", "init", "lr", "norm"}
    assert explorer.controls["depth"].value == 4
    assert explorer.record is None, "draw=False computes nothing yet"


def test_update_recomputes_and_redraws(explorer):
    figs = explorer.update(depth=12, activation="sigmoid", init="default")
    assert set(figs) == {"flow", "histograms"} and all(isinstance(f, Figure) for f in figs.values())
    assert explorer.settings.depth == 12
    assert [f.kind for f in explorer.findings] == ["vanishing"]
    assert "vanishing" in explorer.summary.value
    figs = explorer.update(activation="relu", init="he", depth=6)
    assert [f.kind for f in explorer.findings] == ["healthy"]
    assert len(figs["flow"].axes[0].lines[0].get_xdata()) == 7, "6 hidden layers and the output layer"


def test_changing_a_control_triggers_an_update(explorer):
    explorer.controls["norm"].value = "batch"
    assert explorer.settings.norm == "batch"
    assert any(name.endswith(".norm") for name in explorer.record.layers)


def test_bad_settings_are_refused(explorer):
    with pytest.raises(TypeError, match="unknown settings"):
        explorer.update(colour="red")
    with pytest.raises(ValueError):
        ExplorerSettings(activation="swish")
    with pytest.raises(ValueError):
        ExplorerSettings(steps=1)


def test_run_experiment_is_deterministic():
    s = ExplorerSettings(depth=3, width=8, steps=3)
    a, b = run_experiment(s), run_experiment(s)
    assert a.loss == b.loss
