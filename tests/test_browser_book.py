"""The static book in a real browser (Debian's headless Chromium under Selenium), as a reader sees it.

Every page of the table of contents loads with no console error, its math is typeset by
MathJax (served from the book itself: no CDN), and every figure loads and is visible; every
internal link and cross-reference lands on an existing page and anchor; the search box finds
the right chapter; each assignment page's download is a notebook that opens; each chapter's
interactive figures respond to their controls without a kernel; pages are readable on a
phone-sized screen. A page with a planted fault fails with its name and a screenshot.

Screenshots of every page (desktop, full length; phone, first screen) and of every explorer
are saved under _build/screenshots/ (or $COURSE_SCREENSHOTS) for review.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import nbformat
import pytest
from book_chapters import toc_chapters
from browser import (
    PHONE,
    SCREENSHOTS,
    PageReport,
    broken_links,
    chrome,
    inspect_page,
    safe_name,
    screenshot,
    serve,
    toc_files,
    url_of,
)

pytestmark = pytest.mark.slow

CHAPTERS = toc_chapters()  # landing page -> the chapter's pages (landing page, then sections)
ASSIGNMENT_PAGES = [d for d in toc_files() if re.match(r"book/assignments/ps\d\d$", d)]


@pytest.fixture(scope="module")
def site(html: Path):
    with serve(html) as base:
        yield base


@pytest.fixture(scope="module")
def downloads(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def driver(downloads: Path):
    with chrome(download_dir=downloads) as d:
        yield d


@pytest.fixture(scope="module")
def reports(driver, site: str) -> dict[str, PageReport]:
    """Every page of the book, loaded and inspected once (desktop size, full-length screenshots)."""
    return {
        name: inspect_page(driver, url_of(site, name), name, SCREENSHOTS / "desktop") for name in toc_files()
    }


def test_every_page_loads_with_math_and_visible_figures_and_no_console_error(reports):
    failures = [r.failure() for r in reports.values() if r.problems]
    assert not failures, "\n".join(failures)
    for chapter, pages in CHAPTERS.items():
        for name in pages:
            assert reports[name].n_math > 0, f"{name}: no math on a chapter page"
        n_figures = sum(reports[name].n_figures for name in pages)
        shots = ", ".join(str(reports[name].screenshot) for name in pages)
        assert n_figures >= 3, f"{chapter}: {n_figures} figures on its pages; screenshots {shots}"
    assert all(r.screenshot.stat().st_size > 10_000 for r in reports.values())


def test_internal_links_and_cross_references_resolve(reports, site: str, html: Path):
    n_links = sum(len(r.links) for r in reports.values())
    assert n_links > 100, "too few links found: the inspection did not see the pages"
    bad = broken_links(reports, site, html)
    assert not bad, "broken links:\n" + "\n".join(bad)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("vanishing", "book/ch03_vanishing"),
        ("clipping", "book/ch02_exploding"),
        ("梯度爆炸", "book/ch02_exploding"),
    ],
)
def test_search_box_finds_the_right_chapter(driver, site: str, query: str, expected: str):
    """`expected` is a chapter: a hit on any of its pages (landing or section) counts."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url_of(site, "book/preface"))
    wait = WebDriverWait(driver, 30)
    button = next(
        b for b in driver.find_elements(By.CSS_SELECTOR, ".search-button__button") if b.is_displayed()
    )
    button.click()
    box = wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, "form.bd-search input[name='q']")))
    box.send_keys(query, Keys.ENTER)
    wait.until(lambda d: "search.html" in d.current_url)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#search-results ul.search li a"))
    time.sleep(0.5)  # results arrive in batches; let the list settle
    hits = [
        a.get_attribute("href")
        for a in driver.find_elements(By.CSS_SELECTOR, "#search-results ul.search li a")
    ]
    pages = list(dict.fromkeys(re.sub(r"\.html.*$", "", h.removeprefix(site)) for h in hits if h))
    screenshot(driver, SCREENSHOTS / "search" / f"{safe_name(query)}.png", full_page=False)
    chapter = set(CHAPTERS.get(expected, [expected]))
    assert chapter & set(pages[:3]), f"search for {query!r}: top results {pages[:5]}, expected {expected}"


@pytest.mark.parametrize("page", ASSIGNMENT_PAGES)
def test_assignment_download_is_a_notebook_that_opens(driver, site: str, downloads: Path, page: str):
    from selenium.webdriver.common.by import By

    driver.get(url_of(site, page))
    links = [
        a
        for a in driver.find_elements(By.CSS_SELECTOR, "a[href$='.ipynb']")
        if "_downloads" in (a.get_attribute("href") or "") and a.is_displayed()
    ]
    assert links, f"{page}: no visible download link to a notebook"
    name = links[0].get_attribute("href").rsplit("/", 1)[1]
    target = downloads / name
    target.unlink(missing_ok=True)
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", links[0])
    links[0].click()
    deadline = time.time() + 30
    while not target.exists() and time.time() < deadline:
        time.sleep(0.2)
    assert target.exists(), f"{page}: clicking {name} downloaded nothing into {downloads}"
    nb = nbformat.read(target, as_version=4)
    nbformat.validate(nb)
    sources = "\n".join(c.source for c in nb.cells)
    assert "BEGIN SOLUTION" not in sources and "HIDDEN TESTS" not in sources, f"{name} leaks answers"
    assert "NotImplementedError" in sources or "YOUR CODE HERE" in sources, (
        f"{name} is not the student version"
    )
    graded = [c for c in nb.cells if c.get("metadata", {}).get("nbgrader", {}).get("grade")]
    assert len(graded) >= 5, f"{name}: {len(graded)} graded cells; the download is not the assignment"


@pytest.mark.parametrize("chapter", list(CHAPTERS))
def test_interactive_figures_respond_to_their_controls_without_a_kernel(driver, site: str, chapter: str):
    """Every chapter has an interactive figure on one of its pages; every one of them responds."""
    from selenium.webdriver.common.by import By

    found = 0
    for page in CHAPTERS[chapter]:
        driver.get(url_of(site, page))
        explorers = driver.find_elements(By.CSS_SELECTOR, ".static-explorer")
        found += len(explorers)
        for k, ex in enumerate(explorers):
            _exercise_explorer(driver, page, k, ex)
    assert found, f"{chapter}: no interactive figure on any of its pages {CHAPTERS[chapter]}"


def _exercise_explorer(driver, page: str, k: int, ex) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    driver.execute_script("arguments[0].scrollIntoView({block: 'start'});", ex)
    img = ex.find_element(By.CSS_SELECTOR, "img.sx-figure")
    caption = ex.find_element(By.CSS_SELECTOR, ".sx-caption")
    n_frames = int(ex.get_attribute("data-frames"))
    assert n_frames >= 4, f"{page}: explorer {k} has {n_frames} frames"
    seen = {img.get_attribute("src")}
    for control in ex.find_elements(By.CSS_SELECTOR, "[data-control]"):
        before = (img.get_attribute("src"), img.get_attribute("data-key"), caption.text)
        if control.tag_name == "select":
            menu = Select(control)
            current = int(menu.first_selected_option.get_attribute("value"))
            menu.select_by_index((current + 1) % len(menu.options))
        else:  # a range slider: the keyboard moves it, as a reader would
            control.click()
            key = (
                Keys.ARROW_LEFT
                if control.get_attribute("value") == control.get_attribute("max")
                else Keys.ARROW_RIGHT
            )
            control.send_keys(key)
        after = (img.get_attribute("src"), img.get_attribute("data-key"), caption.text)
        name = control.get_attribute("data-control")
        assert after[1] != before[1], f"{page}: moving {name!r} did not change the frame"
        assert after[0] != before[0] and after[0] not in seen, (
            f"{page}: moving {name!r} left the same picture"
        )
        assert after[2] != before[2], f"{page}: the caption did not follow {name!r}"
        seen.add(after[0])
        loaded = driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img)
        assert loaded and loaded > 100, f"{page}: the new frame for {name!r} does not load"
    ex.screenshot(str(_mkdir(SCREENSHOTS / "explorers") / f"{safe_name(page)}-{k}.png"))


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_pages_are_readable_on_a_phone(driver, site: str):
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", PHONE)
    problems = []
    try:
        for name in toc_files():
            driver.get(url_of(site, name))
            m = driver.execute_script(
                """const a = document.querySelector("article") || document.querySelector("main");
                   const p = a.querySelector("p"), r = a.getBoundingClientRect();
                   const side = document.querySelector(".bd-sidebar-primary");
                   const sr = side ? side.getBoundingClientRect() : null;
                   return {viewport: window.innerWidth, scroll: document.documentElement.scrollWidth,
                           left: r.left, width: r.width, font: p ? parseFloat(getComputedStyle(p).fontSize) : 16,
                           sidebarOver: !!sr && sr.width > 0 && sr.right > 1 && getComputedStyle(side).visibility !== "hidden"};"""
            )
            shot = screenshot(driver, SCREENSHOTS / "phone" / f"{safe_name(name)}.png", full_page=False)
            # a page wider than the phone makes the browser zoom out (innerWidth grows past the device width)
            m["scroll"] = max(m["scroll"], m["viewport"])
            m["viewport"] = PHONE["width"]
            if m["scroll"] > m["viewport"] + 2:
                problems.append(
                    f"{name}: the page scrolls sideways ({m['scroll']} px wide on a {m['viewport']} px screen); {shot}"
                )
            if m["width"] < 0.85 * m["viewport"] or m["left"] < -1:
                problems.append(
                    f"{name}: the text column is {m['width']:.0f} px of {m['viewport']} px; {shot}"
                )
            if m["font"] < 14:
                problems.append(f"{name}: body text {m['font']} px; {shot}")
            if m["sidebarOver"]:
                problems.append(f"{name}: the navigation sidebar covers the text; {shot}")
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    assert not problems, "\n".join(problems)


def test_chinese_terms_are_drawn_with_a_real_font(driver, site: str):
    """The glossary's Chinese terms are glyphs, not missing-glyph boxes (which are all alike)."""
    driver.get(url_of(site, "book/glossary"))
    drawn = driver.execute_script(
        """const el = Array.from(document.querySelectorAll("article dt, article td, article p"))
                          .find(e => e.textContent.includes("梯度爆炸"));
           if (!el) return null;
           const c = document.createElement("canvas"); c.width = 40; c.height = 40;
           const ctx = c.getContext("2d");
           ctx.font = "32px " + getComputedStyle(el).fontFamily;
           const draw = ch => { ctx.clearRect(0, 0, 40, 40); ctx.fillText(ch, 2, 34);
                                return Array.from(ctx.getImageData(0, 0, 40, 40).data).join(","); };
           return ["梯", "度", "爆", "炸"].map(draw);"""
    )
    assert drawn, "the glossary does not show 梯度爆炸"
    assert len(set(drawn)) == 4, (
        "梯, 度, 爆 and 炸 are drawn identically: the browser has no font for Chinese and shows boxes "
        "(apt-get install fonts-wqy-zenhei)"
    )


def test_a_broken_page_fails_with_its_name_and_a_screenshot(driver, html: Path, tmp_path: Path):
    """Faults planted in copies of a real chapter page are each reported, by page name, with a screenshot."""
    root = tmp_path / "site"
    root.mkdir()
    for entry in html.iterdir():  # the real build, linked, except the pages planted below
        if entry.name != "book":
            (root / entry.name).symlink_to(entry)
    (root / "book").mkdir()
    for entry in (html / "book").iterdir():
        (root / "book" / entry.name).symlink_to(entry)
    page = (html / "book" / "ch01_backprop.html").read_text()
    first_figure = re.search(r'src="(\.\./_images/[^"]+)"', page).group(1)
    planted = {
        "broken_figure": page.replace(f'src="{first_figure}"', 'src="../_images/no-such-figure.png"', 1),
        "console_error": page.replace("</body>", "<script>console.error('planted error');</script></body>"),
        "unresolved_reference": page.replace(
            "</article>",
            '<p><a href="ch99_missing.html#nowhere">ch99</a> <a href="#no-such-label">eq</a></p></article>',
        ),
    }
    shots = tmp_path / "shots"
    reports = {}
    with serve(root) as base:
        for name, text in planted.items():
            (root / "book" / f"{name}.html").write_text(text)
            reports[name] = inspect_page(
                driver, url_of(base, f"book/{name}"), f"book/{name}", shots, full_page=False
            )
        links = broken_links({"book/unresolved_reference": reports["unresolved_reference"]}, base, root)
    for report in reports.values():
        assert report.screenshot.exists() and report.screenshot.stat().st_size > 10_000
    failure = reports["broken_figure"].failure()
    assert "page book/broken_figure" in failure and str(reports["broken_figure"].screenshot) in failure
    assert any("no-such-figure.png" in p for p in reports["broken_figure"].problems), failure
    assert any("planted error" in p for p in reports["console_error"].problems), reports[
        "console_error"
    ].failure()
    assert not reports["unresolved_reference"].problems
    assert any("ch99_missing.html" in x and "no such file" in x for x in links), links
    assert any("no-such-label" in x and "book/unresolved_reference" in x for x in links), links
    shutil.rmtree(root)
