"""course_lib.static_explorer: every combination is rendered once, the HTML carries every frame and
controls that address them, and the live version calls the same render function.

The page's JavaScript is exercised in a real browser by tests/test_browser_explorer.py.
"""

from __future__ import annotations

import base64
import io
import json

import ipywidgets as widgets
import matplotlib.pyplot as plt
import pytest
from bs4 import BeautifulSoup
from matplotlib.figure import Figure
from PIL import Image

from course_lib.static_explorer import Control, LiveExplorer, StaticExplorer, figure_to_data_uri


class CountingRender:
    """A render function that draws its arguments and counts its calls."""

    def __init__(self):
        self.calls: list[dict] = []

    def __call__(self, slope: float, colour: str) -> Figure:
        self.calls.append({"slope": slope, "colour": colour})
        fig, ax = plt.subplots(figsize=(2, 1.5))
        ax.plot([0, 1], [0, slope], color=colour)
        ax.set_ylim(-3, 3)
        return fig


@pytest.fixture
def explorer() -> StaticExplorer:
    return StaticExplorer(
        CountingRender(),
        [
            Control("slope", (-2.0, 0.5, 2.0), default=0.5),
            Control("colour", ("red", "blue"), widget="select", label="line colour"),
        ],
        title="A line",
    )


def decode(uri: str) -> Image.Image:
    assert uri.startswith("data:image/png;base64,")
    return Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))


def test_every_combination_is_rendered_once_and_cached(explorer):
    frames = explorer.frames()
    assert explorer.n_frames == 6 and len(frames) == 6
    assert set(frames) == {f"{i},{j}" for i in range(3) for j in range(2)}
    calls = explorer.render.calls
    assert sorted((c["slope"], c["colour"]) for c in calls) == sorted(
        (s, c) for s in (-2.0, 0.5, 2.0) for c in ("red", "blue")
    )
    explorer.frames()
    explorer.to_html()
    assert len(explorer.render.calls) == 6, "frames are computed once"
    images = {k: decode(v) for k, v in frames.items()}
    assert all(im.size[0] > 50 and im.size[1] > 50 for im in images.values())
    assert len({im.tobytes() for im in images.values()}) == 6, "different settings give different pictures"
    assert explorer.settings([2, 1]) == {"slope": 2.0, "colour": "blue"}


def test_html_has_controls_every_frame_and_starts_at_the_defaults(explorer):
    soup = BeautifulSoup(explorer.to_html(), "html.parser")
    root = soup.select_one("div.static-explorer")
    assert root["data-frames"] == "6"
    slider = root.select_one('input[type="range"][data-control="slope"]')
    assert (slider["min"], slider["max"], slider["value"]) == ("0", "2", "1")
    select = root.select_one('select[data-control="colour"]')
    assert [o.get_text() for o in select.find_all("option")] == ["red", "blue"]
    assert select.find("option", selected=True)["value"] == "0"
    assert root.find("label", attrs={"for": select["id"]}).get_text() == "line colour"
    data = json.loads(root.select_one("script.sx-data").string)
    assert data["frames"] == explorer.frames()
    img = root.select_one("img.sx-figure")
    assert img["data-key"] == "1,0" and img["src"] == data["frames"]["1,0"]
    assert root.select_one(".sx-caption").get_text() == "slope 0.5, line colour red"
    assert data["labels"] == [["-2.0", "0.5", "2.0"], ["red", "blue"]]
    script = root.find_all("script")[-1].string
    assert root["id"] in script and "addEventListener" in script
    assert "http" not in script, "the page needs nothing from the network"


def test_a_label_cannot_close_the_script(explorer):
    ex = StaticExplorer(
        explorer.render,
        [Control("slope", (1.0,)), Control("colour", ("red",), fmt=lambda v: "</script><b>x")],
    )
    soup = BeautifulSoup(ex.to_html(), "html.parser")
    data = json.loads(soup.select_one("script.sx-data").string)
    assert data["labels"][1] == ["</script><b>x"]
    assert soup.select_one("img.sx-figure") is not None
    assert not soup.find("b"), "the label was escaped, not parsed as HTML"


def test_repr_html_is_the_page_fragment(explorer):
    assert explorer._repr_html_() == explorer.to_html()
    assert "3 x 2" not in repr(explorer) and "6 frames" in repr(explorer)


def test_bad_controls_are_refused():
    render = CountingRender()
    with pytest.raises(ValueError, match="not one of"):
        Control("slope", (1, 2), default=3)
    with pytest.raises(ValueError, match="no values"):
        Control("slope", ())
    with pytest.raises(ValueError, match="repeats"):
        Control("slope", (1, 1))
    with pytest.raises(ValueError, match="identifier"):
        Control("the slope", (1,))
    with pytest.raises(ValueError, match="slider"):
        Control("slope", (1,), widget="knob")
    with pytest.raises(ValueError, match="distinct names"):
        StaticExplorer(render, [Control("slope", (1,)), Control("slope", (2,))])
    with pytest.raises(ValueError, match="max_frames"):
        StaticExplorer(render, [Control("slope", tuple(range(10))), Control("colour", tuple("abcdefg"))])


def test_a_render_function_that_returns_no_figure_is_named():
    ex = StaticExplorer(lambda slope: None, [Control("slope", (1, 2))])
    with pytest.raises(TypeError, match=r"render\(\{'slope': 1\}\) returned NoneType"):
        ex.frames()


def test_figure_to_data_uri_closes_the_figure():
    fig, ax = plt.subplots()
    ax.plot([1, 2])
    uri = figure_to_data_uri(fig, dpi=50)
    assert decode(uri).size[0] > 100
    assert not plt.fignum_exists(fig.number)


def test_live_explorer_recomputes_on_a_control_change(explorer):
    live = explorer.live()
    assert isinstance(live, LiveExplorer) and isinstance(live, widgets.VBox)
    assert isinstance(live.controls["slope"], widgets.SelectionSlider)
    assert isinstance(live.controls["colour"], widgets.Dropdown)
    assert explorer.render.calls[-1] == {"slope": 0.5, "colour": "red"}
    live.controls["slope"].value = 2.0
    assert explorer.render.calls[-1] == {"slope": 2.0, "colour": "red"}
    assert live.figure.axes[0].lines[0].get_ydata()[1] == 2.0
    live.controls["colour"].value = "blue"
    assert explorer.render.calls[-1] == {"slope": 2.0, "colour": "blue"}
    assert live.caption.value == "slope 2.0, line colour blue"
    with pytest.raises(TypeError, match="unknown controls"):
        live.update(width=3)
