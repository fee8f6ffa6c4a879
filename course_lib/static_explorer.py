"""Interactive figures without a kernel: every setting is computed when the book is built.

A reader of the static HTML book has no Python behind the page, so an explorer there
cannot recompute anything. What it can do is show a picture that was computed in
advance for *every* combination of its controls' values, and swap pictures when a
control moves. `StaticExplorer` does that from one render function:

    ex = StaticExplorer(render, [Control("depth", (2, 5, 10, 20), default=10),
                                 Control("activation", ("sigmoid", "relu"), widget="select")])
    ex           # a notebook cell's last expression: self-contained HTML (controls, frames, JS)
    ex.live()    # in JupyterLab: the same controls as ipywidgets, calling render on each change

`render(**values) -> Figure` is called once per combination when the HTML is first asked
for (so n₁·n₂·… calls: keep the grids small), and each figure is stored as a PNG data URI
inside the page. The HTML needs no server, no CDN and no kernel: a few lines of JavaScript
pick the frame whose key is the controls' current positions. `live()` calls the same
render function, so the book and JupyterLab show the same experiment.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import itertools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import ipywidgets as widgets
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

Render = Callable[..., Figure]


@dataclass(frozen=True)
class Control:
    """One control of an explorer: a name (the render function's keyword) and its values."""

    name: str  # keyword argument of the render function
    values: tuple[Any, ...]  # every value the control can take, in display order
    default: Any = None  # starting value (None: the first)
    label: str | None = None  # text shown beside the control (None: the name)
    widget: str = "slider"  # "slider" (ordered values) or "select" (a drop-down)
    fmt: Callable[[Any], str] = field(default=str, compare=False)  # how a value is printed

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", tuple(self.values))
        if not self.name.isidentifier():
            raise ValueError(f"a control's name must be a Python identifier, got {self.name!r}")
        if not self.values:
            raise ValueError(f"control {self.name!r} has no values")
        if len(set(map(repr, self.values))) != len(self.values):
            raise ValueError(f"control {self.name!r} repeats a value: {self.values}")
        if self.widget not in ("slider", "select"):
            raise ValueError(f"widget must be 'slider' or 'select', got {self.widget!r}")
        if self.default is None:
            object.__setattr__(self, "default", self.values[0])
        elif self.default not in self.values:
            raise ValueError(f"default {self.default!r} of {self.name!r} is not one of {self.values}")

    @property
    def index(self) -> int:
        """Position of the default value."""
        return self.values.index(self.default)

    @property
    def text(self) -> str:
        return self.label or self.name


def figure_to_data_uri(fig: Figure, dpi: int = 72, tight: bool = False) -> str:
    """The figure as a base64 PNG data URI; the figure is closed afterwards.

    tight=True crops to the drawn content, at the cost of drawing the figure twice; render
    functions that call `fig.tight_layout()` themselves do not need it.
    """
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight" if tight else None)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _key(indices: Sequence[int]) -> str:
    return ",".join(map(str, indices))


class StaticExplorer:
    """A render function over a grid of control values, shown static (HTML) or live (ipywidgets)."""

    def __init__(
        self,
        render: Render,
        controls: Sequence[Control],
        *,
        title: str = "",
        caption: Callable[..., str] | None = None,
        dpi: int = 72,
        max_frames: int = 64,
    ):
        self.render = render
        self.controls = tuple(controls)
        names = [c.name for c in self.controls]
        if not self.controls or len(set(names)) != len(names):
            raise ValueError(f"an explorer needs one or more controls with distinct names, got {names}")
        if self.n_frames > max_frames:
            raise ValueError(
                f"{self.n_frames} combinations of {names} exceed max_frames={max_frames}: every one is "
                "rendered at build time and stored in the page; use fewer values or raise max_frames"
            )
        self.title = title
        self.caption = caption or (
            lambda **v: ", ".join(f"{c.text} {c.fmt(v[c.name])}" for c in self.controls)
        )
        self.dpi = dpi
        self._frames: dict[str, str] | None = None

    @property
    def n_frames(self) -> int:
        n = 1
        for c in self.controls:
            n *= len(c.values)
        return n

    def settings(self, indices: Sequence[int]) -> dict[str, Any]:
        """The keyword arguments of the render function at these control positions."""
        return {c.name: c.values[i] for c, i in zip(self.controls, indices, strict=True)}

    def frames(self) -> dict[str, str]:
        """Every frame, keyed "i,j,..." by the controls' value positions: PNG data URIs (computed once)."""
        if self._frames is None:
            grid = itertools.product(*(range(len(c.values)) for c in self.controls))
            frames = {}
            for idx in grid:
                fig = self.render(**self.settings(idx))
                if not isinstance(fig, Figure):
                    raise TypeError(
                        f"render({self.settings(idx)}) returned {type(fig).__name__}, not a Figure"
                    )
                frames[_key(idx)] = figure_to_data_uri(fig, self.dpi)
            self._frames = frames
        return self._frames

    def captions(self) -> dict[str, str]:
        grid = itertools.product(*(range(len(c.values)) for c in self.controls))
        return {_key(idx): self.caption(**self.settings(idx)) for idx in grid}

    def _control_html(self, uid: str, k: int, c: Control) -> str:
        cid = f"{uid}-c{k}"
        label = f'<label for="{cid}">{html.escape(c.text)}</label>'
        if c.widget == "slider":
            value = html.escape(c.fmt(c.default))
            return (
                f'<span class="sx-control">{label} <input type="range" id="{cid}" data-control="{c.name}" '
                f'min="0" max="{len(c.values) - 1}" step="1" value="{c.index}"> '
                f'<output for="{cid}" class="sx-value">{value}</output></span>'
            )
        options = "".join(
            f'<option value="{i}"{" selected" if i == c.index else ""}>{html.escape(c.fmt(v))}</option>'
            for i, v in enumerate(c.values)
        )
        return f'<span class="sx-control">{label} <select id="{cid}" data-control="{c.name}">{options}</select></span>'

    def to_html(self) -> str:
        """Self-contained HTML: the controls, every frame, and the script that swaps them."""
        frames, captions = self.frames(), self.captions()
        start = _key([c.index for c in self.controls])
        digest = hashlib.sha1("".join(frames.values()).encode()).hexdigest()[:10]
        uid = f"sx-{digest}"
        labels = [[c.fmt(v) for v in c.values] for c in self.controls]
        data = json.dumps({"frames": frames, "captions": captions, "labels": labels})
        data = data.replace("</", "<\\/")  # nothing in the JSON can close its <script>
        controls = "\n".join(self._control_html(uid, k, c) for k, c in enumerate(self.controls))
        title = f'<p class="sx-title"><strong>{html.escape(self.title)}</strong></p>' if self.title else ""
        caption = html.escape(captions[start])
        return f"""<div class="static-explorer" id="{uid}" data-frames="{len(frames)}">
{title}<div class="sx-controls" style="display:flex;flex-wrap:wrap;gap:0.4em 1.5em;align-items:center">
{controls}
</div>
<img class="sx-figure" src="{frames[start]}" alt="{caption}" data-key="{start}" style="max-width:100%;height:auto">
<p class="sx-caption" aria-live="polite">{caption}</p>
<script type="application/json" class="sx-data">{data}</script>
<script>
(function () {{
  var root = document.getElementById("{uid}");
  if (!root || root.dataset.ready) return;
  root.dataset.ready = "1";
  var data = JSON.parse(root.querySelector("script.sx-data").textContent);
  var inputs = root.querySelectorAll("[data-control]");
  var img = root.querySelector("img.sx-figure"), cap = root.querySelector(".sx-caption");
  function show() {{
    var key = Array.prototype.map.call(inputs, function (el) {{ return el.value; }}).join(",");
    Array.prototype.forEach.call(inputs, function (el, k) {{
      var out = root.querySelector('output[for="' + el.id + '"]');
      if (out) out.textContent = data.labels[k][+el.value];
    }});
    img.src = data.frames[key];
    img.alt = cap.textContent = data.captions[key];
    img.dataset.key = key;
  }}
  Array.prototype.forEach.call(inputs, function (el) {{
    el.addEventListener("input", show);
    el.addEventListener("change", show);
  }});
}})();
</script>
</div>"""

    def _repr_html_(self) -> str:
        return self.to_html()

    def live(self) -> LiveExplorer:
        """The same controls as ipywidgets, recomputing with the render function (needs a kernel)."""
        return LiveExplorer(self)

    def __repr__(self) -> str:
        spec = ", ".join(f"{c.name}={list(c.values)}" for c in self.controls)
        return f"StaticExplorer({getattr(self.render, '__name__', 'render')}, {spec}; {self.n_frames} frames)"


class LiveExplorer(widgets.VBox):
    """ipywidgets controls over the explorer's render function; `update(**values)` recomputes.

    Displayed in JupyterLab (the last expression of a cell), each change of a control calls
    the render function again and shows the new figure.
    """

    def __init__(self, explorer: StaticExplorer):
        self.explorer = explorer
        self.values = {c.name: c.default for c in explorer.controls}
        self.figure: Figure | None = None
        self.controls = {}
        style = {"description_width": "initial"}  # the whole label, not "learning r..."
        for c in explorer.controls:
            options = [(c.fmt(v), v) for v in c.values]
            if c.widget == "slider":
                w = widgets.SelectionSlider(
                    options=options, value=c.default, description=c.text, continuous_update=False, style=style
                )
            else:
                w = widgets.Dropdown(options=options, value=c.default, description=c.text, style=style)
            w.observe(self._on_change, names="value")
            self.controls[c.name] = w
        self.caption = widgets.HTML()
        self.output = widgets.Output()
        super().__init__([widgets.HBox(list(self.controls.values())), self.caption, self.output])
        self.update()

    def _on_change(self, change: dict) -> None:
        self.update(**{name: w.value for name, w in self.controls.items()})

    def update(self, **values: Any) -> Figure:
        unknown = set(values) - set(self.values)
        if unknown:
            raise TypeError(f"unknown controls {sorted(unknown)}; the controls are {list(self.values)}")
        self.values.update(values)
        fig = self.explorer.render(**self.values)
        plt.close(fig)
        self.figure = fig
        self.caption.value = html.escape(self.explorer.caption(**self.values))
        with self.output:
            from IPython.display import clear_output, display

            clear_output(wait=True)
            display(fig)
        return fig

    def __repr__(self) -> str:
        return f"LiveExplorer({self.values})"
