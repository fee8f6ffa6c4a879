"""A StaticExplorer's HTML in a real browser with no kernel and no network: moving a control
shows the frame computed for the new setting, and two explorers on one page stay apart.

The page is served from localhost to Debian's headless Chromium; the frames are rendered by
a render function that writes its arguments into the picture, so the test can tell which
frame is shown from the pixels' source.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pytest
from browser import SCREENSHOTS, chrome, console_errors, serve
from matplotlib.figure import Figure

from course_lib.static_explorer import Control, StaticExplorer

pytestmark = pytest.mark.slow


def render(depth: int, activation: str) -> Figure:
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.text(0.5, 0.5, f"{depth} {activation}", ha="center")
    ax.axis("off")
    return fig


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    a = StaticExplorer(
        render,
        [Control("depth", (2, 5, 10), default=5), Control("activation", ("relu", "tanh"), widget="select")],
        title="first",
    )
    b = StaticExplorer(render, [Control("depth", (1, 3)), Control("activation", ("gelu",))], title="second")
    root = tmp_path_factory.mktemp("explorer-page")
    (root / "index.html").write_text(
        f"<!doctype html><html><head><meta charset='utf-8'></head><body>{a.to_html()}{b.to_html()}</body></html>"
    )
    with serve(root) as base, chrome(width=900, height=700) as driver:
        driver.get(base + "index.html")
        yield driver, a, b


def shown(driver, explorer: StaticExplorer, k: int) -> tuple[str, str, str]:
    from selenium.webdriver.common.by import By

    root = driver.find_elements(By.CSS_SELECTOR, ".static-explorer")[k]
    img = root.find_element(By.CSS_SELECTOR, "img.sx-figure")
    return (
        img.get_attribute("data-key"),
        img.get_attribute("src"),
        root.find_element(By.CSS_SELECTOR, ".sx-caption").text,
    )


def test_slider_and_select_swap_the_frame(page):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    driver, a, _ = page
    frames = a.frames()
    assert shown(driver, a, 0) == ("1,0", frames["1,0"], "depth 5, activation relu")
    root = driver.find_elements(By.CSS_SELECTOR, ".static-explorer")[0]
    slider = root.find_element(By.CSS_SELECTOR, "input[type=range]")
    slider.click()
    slider.send_keys(Keys.END)
    assert shown(driver, a, 0) == ("2,0", frames["2,0"], "depth 10, activation relu")
    assert root.find_element(By.CSS_SELECTOR, "output").text == "10"
    Select(root.find_element(By.CSS_SELECTOR, "select")).select_by_visible_text("tanh")
    assert shown(driver, a, 0) == ("2,1", frames["2,1"], "depth 10, activation tanh")
    slider.send_keys(Keys.HOME)
    assert shown(driver, a, 0) == ("0,1", frames["0,1"], "depth 2, activation tanh")
    assert driver.execute_script("return document.querySelector('img.sx-figure').naturalWidth") > 100
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    root.screenshot(str(Path(SCREENSHOTS) / "static_explorer_unit.png"))


def test_two_explorers_on_a_page_are_independent(page):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver, a, b = page
    before_a = shown(driver, a, 0)
    root_b = driver.find_elements(By.CSS_SELECTOR, ".static-explorer")[1]
    slider = root_b.find_element(By.CSS_SELECTOR, "input[type=range]")
    slider.click()
    slider.send_keys(Keys.ARROW_RIGHT)
    assert shown(driver, b, 1) == ("1,0", b.frames()["1,0"], "depth 3, activation gelu")
    assert shown(driver, a, 0) == before_a
    assert console_errors(driver) == []
