"""The student's JupyterLab flow, for real: JupyterLab with nbgrader's extensions on 127.0.0.1,
driven in Debian's headless Chromium.

- ps01 from exercises/, untouched: Run → Run All Cells stops at the first
  `NotImplementedError`, and nbgrader's Validate button reports failure.
- ps01 with the reference answers typed in (the release notebook with the solution cells'
  code from solutions/, markers removed): every cell runs without an error and Validate
  reports success.
- The chapters' explorers in JupyterLab: the static HTML one responds to its controls in a
  notebook's output, and `.live()` recomputes through ipywidgets when a control changes.
- The assignment list: an instructor releases ps01 to a temporary exchange with
  `nbgrader release_assignment`; the student opens Nbgrader → Assignment List, clicks
  Fetch, then Submit, and the submission lands in the exchange's inbound folder.

Screenshots go to _build/screenshots/lab/.
"""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
from pathlib import Path

import nbformat
import pytest
from browser import REPO, SCREENSHOTS, chrome, screenshot
from browser.lab import (
    VENV_BIN,
    click_menu,
    close_dialog,
    error_outputs,
    jupyter_lab,
    notebook_state,
    open_notebook,
    run_all_cells,
    validate,
    wait_for,
)

from course_tools.grading.submissions import fill, solution_answers

pytestmark = pytest.mark.slow

ASSIGNMENT = "ps01_backprop"
RELEASE = REPO / "exercises" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
SOURCE = REPO / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
SHOTS = SCREENSHOTS / "lab"


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> dict[str, Path]:
    """A student folder (untouched and reference copies of ps01), and ps01 released to an exchange."""
    base = tmp_path_factory.mktemp("lab")
    exchange = base / "exchange"
    exchange.mkdir()
    exchange.chmod(0o777)
    config = (REPO / "nbgrader_config.py").read_text() + f"\nc.Exchange.root = {str(exchange)!r}\n"
    student = base / "student"
    for name in ("untouched", "reference"):
        (student / name).mkdir(parents=True)
    (student / "nbgrader_config.py").write_text(config)
    explorer = nbformat.v4.new_notebook()
    explorer.cells = [
        nbformat.v4.new_code_cell(
            "from course_lib.explorers import learning_rate_explorer\n"
            "ex = learning_rate_explorer(lrs=(0.05, 0.15, 0.21), default_lr=0.15)\n"
            "ex"
        ),
        nbformat.v4.new_code_cell("live = ex.live()\nlive"),
    ]
    explorer.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(explorer, student / "explorer.ipynb")
    shutil.copy(RELEASE, student / "untouched" / RELEASE.name)
    answers = solution_answers(nbformat.read(SOURCE, as_version=4))
    nbformat.write(fill(nbformat.read(RELEASE, as_version=4), answers), student / "reference" / RELEASE.name)

    instructor = base / "course"
    (instructor / "exercises").mkdir(parents=True)
    (instructor / "nbgrader_config.py").write_text(config)
    shutil.copytree(RELEASE.parent, instructor / "exercises" / ASSIGNMENT)
    env = {
        **os.environ,
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOME": str(base / "home"),
    }
    proc = subprocess.run(
        [str(VENV_BIN / "nbgrader"), "release_assignment", ASSIGNMENT],
        cwd=instructor,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, f"nbgrader release_assignment failed:\n{proc.stdout}\n{proc.stderr}"
    return {"base": base, "student": student, "exchange": exchange}


@pytest.fixture(scope="module")
def lab(course):
    with jupyter_lab(course["student"], course["base"] / "home") as server:
        yield server


@pytest.fixture(scope="module")
def driver():
    with chrome(width=1400, height=1000) as d:
        yield d


def test_untouched_release_fails_validation(driver, lab):
    path = f"untouched/{RELEASE.name}"
    open_notebook(driver, lab, path)
    state = run_all_cells(driver)
    errors = error_outputs(driver)
    screenshot(driver, SHOTS / "untouched_after_run_all.png", full_page=False)
    assert errors and errors[0].startswith("NotImplementedError"), f"run all on the blank release: {errors}"
    assert state["executed"] < state["cells"], "Run All stops at the first error"
    outcome, text = validate(driver)
    screenshot(driver, SHOTS / "untouched_validate.png", full_page=False)
    assert outcome == "failed", f"Validate on the untouched release said {outcome}:\n{text}"
    assert "NotImplementedError" in text, text
    close_dialog(driver)


def test_reference_solution_runs_and_passes_validation(driver, lab):
    path = f"reference/{RELEASE.name}"
    open_notebook(driver, lab, path)
    state = run_all_cells(driver, timeout=400)
    errors = error_outputs(driver)
    screenshot(driver, SHOTS / "reference_after_run_all.png", full_page=False)
    assert errors == [], f"the reference answers raised in JupyterLab: {errors}"
    assert state["executed"] == state["cells"], f"not every cell ran: {state}"
    outcome, text = validate(driver, timeout=400)
    screenshot(driver, SHOTS / "reference_validate.png", full_page=False)
    assert outcome == "success", f"Validate on the reference solution said {outcome}:\n{text}"
    assert "Success! Your notebook passes all the tests." in text
    close_dialog(driver)
    assert notebook_state(driver)["dirty"] is False, "Validate saved the notebook first"


def test_assignment_list_fetch_and_submit_through_the_exchange(driver, lab, course):
    from selenium.webdriver.common.by import By

    driver.get(f"{lab.url}lab?token={lab.token}")
    wait_for(
        driver,
        lambda d: d.execute_script("return !!(window.jupyterapp && jupyterapp.shell)"),
        60,
        "JupyterLab",
    )
    wait_for(
        driver,
        lambda d: any(i.text == "Nbgrader" for i in d.find_elements(By.CSS_SELECTOR, ".lm-MenuBar-item")),
        60,
        "the Nbgrader menu",
    )
    click_menu(driver, "Nbgrader", "nbgrader:open-assignment-list")

    def button(list_id: str, label: str):
        def find(d):
            for row in d.find_elements(By.CSS_SELECTOR, f"#{list_id} .list_item"):
                if ASSIGNMENT in row.text:
                    for b in row.find_elements(By.CSS_SELECTOR, "button"):
                        if b.text.strip() == label and b.is_enabled():
                            return b
            return None

        return find

    wait_for(driver, button("released_assignments_list", "Fetch"), 60, "ps01 in Released assignments").click()
    submit = wait_for(
        driver, button("fetched_assignments_list", "Submit"), 60, "ps01 in Downloaded assignments"
    )
    fetched = course["student"] / ASSIGNMENT / RELEASE.name
    assert fetched.exists(), f"Fetch did not put the notebook at {fetched}"
    assert nbformat.read(fetched, as_version=4).cells == nbformat.read(RELEASE, as_version=4).cells
    submit.click()
    wait_for(
        driver,
        lambda d: any(
            ASSIGNMENT in r.text
            for r in d.find_elements(By.CSS_SELECTOR, "#submitted_assignments_list .list_item")
        ),
        60,
        "ps01 in Submitted assignments",
    )
    screenshot(driver, SHOTS / "assignment_list_submitted.png", full_page=False)
    inbound = course["exchange"] / "gradient-problems" / "inbound"
    submissions = [p for p in inbound.iterdir() if p.name.startswith(f"{getpass.getuser()}+{ASSIGNMENT}+")]
    assert submissions, f"nothing from {getpass.getuser()} in {inbound}: {list(inbound.iterdir())}"
    assert (submissions[0] / RELEASE.name).exists()


def test_explorer_runs_static_and_live_in_jupyterlab(driver, lab):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    open_notebook(driver, lab, "explorer.ipynb")
    run_all_cells(driver, timeout=300)
    assert error_outputs(driver) == []
    static = wait_for(
        driver,
        lambda d: d.find_elements(By.CSS_SELECTOR, ".jp-OutputArea .static-explorer"),
        30,
        "the static explorer",
    )[0]
    img = static.find_element(By.CSS_SELECTOR, "img.sx-figure")
    before = img.get_attribute("data-key")
    Select(static.find_element(By.CSS_SELECTOR, "select")).select_by_index(1)
    assert img.get_attribute("data-key") != before, "the static explorer's select did nothing in JupyterLab"

    def live_image(d):
        imgs = d.find_elements(
            By.CSS_SELECTOR, ".jupyter-widgets .jp-OutputArea-output img, .widget-output img"
        )
        return imgs and imgs[-1].get_attribute("src")

    first = wait_for(driver, live_image, 60, "the live explorer's figure")
    dropdown = wait_for(
        driver,
        lambda d: d.find_elements(By.CSS_SELECTOR, ".widget-dropdown select"),
        30,
        "the live explorer's drop-down",
    )[0]
    Select(dropdown).select_by_index(1)
    wait_for(
        driver, lambda d: (src := live_image(d)) and src != first, 60, "the live figure to be recomputed"
    )
    screenshot(driver, SHOTS / "explorer_live.png", full_page=False)
