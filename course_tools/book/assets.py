"""Sphinx extension: pages that load with no console error and fit a phone's screen.

Listed in _config.yml (`sphinx: extra_extensions`). The browser tests found two console
errors in every page Jupyter Book 1 writes, and a page that a phone could not show; this
fixes them where they arise:

- sphinx-thebe adds its configuration script (`const THEBE_JS_URL = ...`) each time the
  builder reads documents, and the build reads twice, so each page declared the constant
  twice: "Uncaught SyntaxError: Identifier 'THEBE_JS_URL' has already been declared" (the
  second copy has filename "" where the first has None, so Sphinx's own check keeps both).
  Each page now gets each inline script once.
- pydata-sphinx-theme reads its colour mode from `html_context["default_mode"]`; unset, the
  page starts with mode "" and logs "Got invalid theme mode". It is now "auto" (follow the
  reader's system setting), unless the configuration names one.
- A table wider than the text column (the instructors' guide has several columns of code)
  widened the whole page on a phone. `static/course-book.css` makes such a table scroll
  inside its own box.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sphinx.application import Sphinx
from sphinx.config import Config


def _default_mode(app: Sphinx, config: Config) -> None:
    config.html_context = {"default_mode": "auto", **(config.html_context or {})}


def _dedupe_scripts(app: Sphinx, pagename: str, templatename: str, context: dict, doctree: Any) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen: set[tuple[str, str]] = set()
    unique = []
    for js in scripts:  # one copy has filename None, the other "" (both inline): compare what the page gets
        key = (str(getattr(js, "filename", js) or ""), repr(sorted(getattr(js, "attributes", {}).items())))
        if key in seen:
            continue
        seen.add(key)
        unique.append(js)
    context["script_files"] = unique


STATIC = Path(__file__).resolve().parent / "static"


def _static_path(app: Sphinx, config: Config) -> None:
    config.html_static_path = [*config.html_static_path, str(STATIC)]


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("config-inited", _default_mode)
    app.connect("config-inited", _static_path)
    app.add_css_file("course-book.css")
    app.connect("html-page-context", _dedupe_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
