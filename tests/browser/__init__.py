"""Helpers for the browser tests: Debian's Chromium driven by Selenium, a static file server on
localhost, and a page check that reports what a reader would see go wrong.

Chromium and ChromeDriver come from Debian's packages (`chromium`, `chromium-driver`;
`python3 dev.py test` installs them on CI), never from a test tool's own download. The
browser starts with a fresh profile and the background-networking features switched off,
so the only traffic is to the servers the tests start on 127.0.0.1.

Screenshots go to `_build/screenshots/` (git-ignored), or to $COURSE_SCREENSHOTS.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import http.server
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("COURSE_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("COURSE_CHROMEDRIVER", "/usr/bin/chromedriver"))
SCREENSHOTS = Path(os.environ.get("COURSE_SCREENSHOTS", REPO / "_build" / "screenshots"))
PHONE = {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True}  # an iPhone 12-14


def require_chromium() -> None:
    """Skip with the install command when Debian's chromium / chromium-driver are absent (fails on CI)."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        msg = f"{', '.join(missing)} missing: apt-get install chromium chromium-driver"
        if os.environ.get("CI"):
            pytest.fail(msg + " (python3 dev.py test installs them when run as root)")
        pytest.skip(msg)


def toc_files() -> list[str]:
    """Every document of the book, in the order of _toc.yml."""
    toc = yaml.safe_load((REPO / "_toc.yml").read_text())
    files = [toc["root"]]

    def walk(entries):
        for e in entries or []:
            if "file" in e:
                files.append(e["file"])
            walk(e.get("sections"))
            walk(e.get("chapters"))

    for part in toc.get("parts", []):
        walk(part.get("chapters"))
    return files


def start_chrome(*, width: int = 1280, height: int = 900, download_dir: Path | None = None):
    """A headless Chromium (Debian's) under Selenium with the system chromedriver."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    require_chromium()
    profile = tempfile.mkdtemp(prefix="course-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--hide-scrollbars",
        "--lang=en-GB",
        f"--window-size={width},{height}",
        f"--user-data-dir={profile}",
    ):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    if download_dir is not None:
        opts.add_experimental_option(
            "prefs",
            {"download.default_directory": str(download_dir), "download.prompt_for_download": False},
        )
    driver = webdriver.Chrome(options=opts, service=Service(executable_path=str(CHROMEDRIVER)))
    driver.set_page_load_timeout(60)
    if download_dir is not None:
        driver.execute_cdp_cmd(
            "Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(download_dir)}
        )
    driver._course_profile = profile  # removed by quit_chrome
    return driver


def quit_chrome(driver) -> None:
    profile = getattr(driver, "_course_profile", None)
    driver.quit()
    if profile:
        shutil.rmtree(profile, ignore_errors=True)


@contextlib.contextmanager
def chrome(**kwargs) -> Iterator:
    driver = start_chrome(**kwargs)
    try:
        yield driver
    finally:
        quit_chrome(driver)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # the tests report what matters
        pass


@contextlib.contextmanager
def serve(directory: Path) -> Iterator[str]:
    """Serve `directory` on 127.0.0.1 (a free port) for the duration; yields the base URL with a trailing /."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def safe_name(docname: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", docname)


def screenshot(driver, path: Path, *, full_page: bool = True, max_height: int = 14000) -> Path:
    """Save a PNG of the page (whole length, up to max_height CSS pixels) or of the viewport."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not full_page:
        driver.save_screenshot(str(path))
        return path
    metrics = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
    size = metrics.get("cssContentSize") or metrics["contentSize"]
    width, height = size["width"], min(size["height"], max_height)
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
        },
    )
    path.write_bytes(base64.b64decode(shot["data"]))
    return path


def console_errors(driver) -> list[str]:
    """Console errors since the last call: console.error, uncaught exceptions, failed loads."""
    return [
        e["message"]
        for e in driver.get_log("browser")
        # the browser asks every site for /favicon.ico by itself; the book has none, and no reader sees that
        if e["level"] == "SEVERE" and "/favicon.ico " not in e["message"]
    ]


# Runs in the page: wait for MathJax (when the page has math) and every image, then report.
_INSPECT_JS = r"""
const done = arguments[arguments.length - 1];
(async () => {
  window.scrollTo(0, document.body.scrollHeight);  // anything lazy loads now
  await new Promise(r => setTimeout(r, 50));
  window.scrollTo(0, 0);
  const mathEls = Array.from(document.querySelectorAll("main .math, article .math"));
  let mathjax = "absent";
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    try { await MathJax.startup.promise; mathjax = "ready"; } catch (e) { mathjax = "failed: " + e; }
  }
  const imgs = Array.from(document.querySelectorAll("article img, main img"));
  await Promise.all(imgs.map(img => img.complete ? null : new Promise(r => {
    img.addEventListener("load", r); img.addEventListener("error", r); setTimeout(r, 10000); })));
  const hiddenByDesign = el => el.closest("details:not([open]), .toggle-hidden, .dropdown, .sx-data");
  const figures = imgs.filter(img => !hiddenByDesign(img)).map(img => {
    const r = img.getBoundingClientRect(), s = getComputedStyle(img);
    return {src: img.currentSrc.slice(0, 120) || img.getAttribute("src"), loaded: img.complete && img.naturalWidth > 0,
            visible: r.width > 20 && r.height > 20 && s.visibility !== "hidden" && s.display !== "none" && +s.opacity > 0};
  });
  const untypeset = mathEls.filter(el => !el.querySelector("mjx-container") && !el.closest(".sx-data"))
                           .map(el => el.textContent.trim().slice(0, 80));
  const mathErrors = Array.from(document.querySelectorAll("mjx-merror")).map(el => el.textContent.slice(0, 80));
  const ids = Array.from(document.querySelectorAll("[id]")).map(el => el.id)
      .concat(Array.from(document.querySelectorAll("a[name]")).map(el => el.getAttribute("name")));
  const links = Array.from(document.querySelectorAll("a[href]")).map(a => a.href);
  const explorers = document.querySelectorAll(".static-explorer").length;
  done({mathjax, nMath: mathEls.length, untypeset, mathErrors, figures, ids, links, explorers,
        title: document.title, text: (document.querySelector("main") || document.body).innerText.length});
})().catch(e => done({error: String(e)}));
"""


@dataclass
class PageReport:
    """What one page showed in the browser, and what went wrong."""

    name: str  # the document name, e.g. book/ch01_backprop
    url: str
    screenshot: Path
    problems: list[str] = field(default_factory=list)
    ids: set[str] = field(default_factory=set)
    links: list[str] = field(default_factory=list)
    n_math: int = 0
    n_figures: int = 0
    n_explorers: int = 0

    def failure(self) -> str:
        return f"page {self.name} ({self.url}); screenshot {self.screenshot}:\n  " + "\n  ".join(
            self.problems
        )


def inspect_page(
    driver, url: str, name: str, shots: Path = SCREENSHOTS, *, full_page: bool = True
) -> PageReport:
    """Load `url`, wait for math and images, screenshot it, and list the reader-visible problems."""
    console_errors(driver)  # drop what earlier pages logged
    driver.get(url)
    driver.set_script_timeout(60)
    info = driver.execute_async_script(_INSPECT_JS)
    time.sleep(0.2)  # let late console messages (failed loads) arrive
    report = PageReport(name=name, url=url, screenshot=shots / f"{safe_name(name)}.png")
    screenshot(driver, report.screenshot, full_page=full_page)
    if "error" in info:
        report.problems.append(f"the page could not be inspected: {info['error']}")
        return report
    report.ids = set(info["ids"])
    report.links = info["links"]
    report.n_math, report.n_figures, report.n_explorers = (
        info["nMath"],
        len(info["figures"]),
        info["explorers"],
    )
    report.problems += [f"console error: {m}" for m in console_errors(driver)]
    if info["nMath"] and info["mathjax"] != "ready":
        report.problems.append(f"{info['nMath']} math elements but MathJax is {info['mathjax']}")
    report.problems += [f"math not typeset: {t!r}" for t in info["untypeset"][:5]]
    report.problems += [f"MathJax error: {t!r}" for t in info["mathErrors"][:5]]
    for fig in info["figures"]:
        if not fig["loaded"]:
            report.problems.append(f"figure does not load: {fig['src']}")
        elif not fig["visible"]:
            report.problems.append(f"figure is not visible: {fig['src']}")
    if info["text"] < 200:
        report.problems.append(f"the page is almost empty ({info['text']} characters)")
    return report


def broken_links(reports: dict[str, PageReport], base: str, root: Path) -> list[str]:
    """Internal links whose page is not in the build, or whose #fragment names no element there."""
    ids_by_path = {urlsplit(r.url).path: r.ids for r in reports.values()}
    found = []
    for report in reports.values():
        for href in report.links:
            if not href.startswith(base):
                continue  # external links are not followed (no network); the book has few
            parts = urlsplit(href)
            path = unquote(parts.path)
            target = root / path.lstrip("/")
            if path.endswith("/"):
                target = target / "index.html"
            if not target.exists():
                found.append(f"{report.name}: link to {href} (no such file in the build)")
                continue
            frag = unquote(parts.fragment)
            if frag and target.suffix == ".html":
                ids = ids_by_path.get(parts.path)
                if ids is None:
                    ids = set(re.findall(r'\b(?:id|name)="([^"]+)"', target.read_text(errors="replace")))
                    ids_by_path[parts.path] = ids
                if frag not in ids:
                    found.append(f"{report.name}: link to {href} (no element with id {frag!r} there)")
    return found


def url_of(base: str, docname: str) -> str:
    return urljoin(base, f"{docname}.html")
