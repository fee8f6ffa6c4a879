"""course_tools.book.assets: each inline script reaches a page once, and the theme gets a colour mode.

The browser tests (tests/test_browser_book.py) see the effect on the real book: no
"Identifier 'THEBE_JS_URL' has already been declared" and no "Got invalid theme mode".
"""

from __future__ import annotations

from types import SimpleNamespace

from sphinx.builders.html._assets import _JavaScript

from course_tools.book.assets import _dedupe_scripts, _default_mode


def test_inline_scripts_are_kept_once_whatever_their_empty_filename():
    thebe = 'const THEBE_JS_URL = "x"'
    scripts = [
        _JavaScript("doctools.js"),
        _JavaScript(None, body=thebe),
        _JavaScript("sphinx-thebe.js", **{"async": "async"}),
        _JavaScript("", body=thebe),  # the second copy Sphinx's own check lets through
        _JavaScript(None, body="var other = 1"),
        _JavaScript("doctools.js"),
    ]
    context = {"script_files": scripts}
    _dedupe_scripts(None, "page", "page.html", context, None)
    kept = [(js.filename, js.attributes.get("body")) for js in context["script_files"]]
    assert kept == [
        ("doctools.js", None),
        (None, thebe),
        ("sphinx-thebe.js", None),
        (None, "var other = 1"),
    ]


def test_colour_mode_defaults_to_auto_and_respects_a_configured_one():
    config = SimpleNamespace(html_context={})
    _default_mode(None, config)
    assert config.html_context == {"default_mode": "auto"}
    config = SimpleNamespace(html_context={"default_mode": "dark", "other": 1})
    _default_mode(None, config)
    assert config.html_context == {"default_mode": "dark", "other": 1}
