"""A real JupyterLab (with nbgrader's server and lab extensions) on 127.0.0.1, for the browser tests.

`jupyter_lab(root, ...)` starts `jupyter lab` from the course's venv with its working
directory at `root` (where nbgrader reads `nbgrader_config.py`, as it does for a student who
starts JupyterLab in the course folder), HOME and Jupyter's config, data and runtime
folders inside the test's temporary directory, a random token, and the application object
exposed to the page (`window.jupyterapp`) so the tests can wait on the kernel's state.
The helpers below then drive the page as a student does: the Run menu, the Validate
button, the Nbgrader menu's Assignment List.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

VENV_BIN = Path(sys.executable).parent


@dataclass
class Lab:
    url: str  # http://127.0.0.1:PORT/
    token: str
    root: Path
    log: Path

    def tree(self, path: str) -> str:
        return f"{self.url}lab/tree/{path}?token={self.token}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def jupyter_lab(root: Path, home: Path, timeout: float = 120) -> Iterator[Lab]:
    """Run JupyterLab serving `root` until the block ends; its log is home/jupyterlab.log."""
    port, token = _free_port(), secrets.token_hex(16)
    home.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "HOME": str(home),
        "JUPYTER_CONFIG_DIR": str(home / ".jupyter"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "IPYTHONDIR": str(home / ".ipython"),
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
    }
    env.pop("JUPYTER_DATA_DIR", None)
    # no "Would you like to get notified about official Jupyter news?" toast over the screenshots
    settings = home / ".jupyter" / "lab" / "user-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True, exist_ok=True)
    (settings / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
    log = home / "jupyterlab.log"
    cmd = [
        str(VENV_BIN / "jupyter"),
        "lab",
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--port-retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        "--LabApp.expose_app_in_browser=True",
        "--LabApp.news_url=",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--ServerApp.terminals_enabled=False",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")  # CI and containers run as root
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT)
    lab = Lab(url=f"http://127.0.0.1:{port}/", token=token, root=root, log=log)
    try:
        deadline = time.time() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{lab.url}api/status?token={token}", timeout=5) as r:
                    json.load(r)
                break
            except OSError:
                if time.time() > deadline:
                    raise RuntimeError(
                        f"JupyterLab did not answer in {timeout} s:\n{log.read_text()[-3000:]}"
                    ) from None
                time.sleep(0.5)
        yield lab
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- driving the page ---------------------------------------------------------------------------

_NOTEBOOK_STATE_JS = """
const app = window.jupyterapp; if (!app) return null;
const w = app.shell.currentWidget;
if (!w || !w.context || !w.content || !w.sessionContext) return null;
const kernel = w.sessionContext.session && w.sessionContext.session.kernel;
const cells = w.content.widgets.filter(c => c.model.type === "code");
const prompts = cells.map(c => (c.node.querySelector(".jp-InputPrompt") || {}).textContent || "");
return {path: w.context.path, kernel: kernel ? kernel.status : "none",
        ready: w.context.isReady, dirty: w.context.model.dirty,
        running: prompts.filter(p => p.includes("*")).length,
        executed: prompts.filter(p => /\\[\\d+\\]/.test(p)).length, cells: cells.length};
"""


def notebook_state(driver) -> dict | None:
    return driver.execute_script(_NOTEBOOK_STATE_JS)


def wait_for(driver, predicate, timeout: float, what: str, poll: float = 0.5):
    """Poll predicate(driver) until it is truthy. An element that JupyterLab re-rendered between
    being found and being read (a widget replacing its output) counts as "not yet"."""
    from selenium.common.exceptions import StaleElementReferenceException

    deadline = time.time() + timeout
    while True:
        try:
            value = predicate(driver)
        except StaleElementReferenceException:
            value = None
        if value:
            return value
        if time.time() > deadline:
            raise TimeoutError(f"waited {timeout:.0f} s for {what}")
        time.sleep(poll)


def open_notebook(driver, lab: Lab, path: str, timeout: float = 120) -> dict:
    """Open a notebook in JupyterLab and wait until its kernel is idle."""
    driver.get(lab.tree(path))
    return wait_for(
        driver,
        lambda d: (
            (s := notebook_state(d)) and s["path"] == path and s["ready"] and s["kernel"] == "idle" and s
        ),
        timeout,
        f"{path} to open with an idle kernel",
    )


def click_menu(driver, menu: str, command: str) -> None:
    """Open a top-level menu by its label and click the item bound to `command`."""
    from selenium.webdriver.common.by import By

    items = driver.find_elements(By.CSS_SELECTOR, ".lm-MenuBar-item")
    target = next((i for i in items if i.text.strip() == menu), None)
    if target is None:
        raise AssertionError(f"no menu {menu!r} in the menu bar: {[i.text for i in items]}")
    target.click()
    entry = wait_for(
        driver,
        lambda d: next(
            (
                e
                for e in d.find_elements(By.CSS_SELECTOR, f'.lm-Menu-item[data-command="{command}"]')
                if e.is_displayed()
            ),
            None,
        ),
        10,
        f"menu item {command}",
    )
    entry.click()


def run_all_cells(driver, timeout: float = 300) -> dict:
    """Run → Run All Cells, then wait until no cell is queued or running and the kernel is idle."""
    before = notebook_state(driver)
    click_menu(driver, "Run", "runmenu:run-all")
    time.sleep(1.0)

    def finished(d):
        s = notebook_state(d)
        return s and s["kernel"] == "idle" and s["running"] == 0 and s["executed"] > 0 and s

    state = wait_for(driver, finished, timeout, "Run All Cells to finish")
    assert before is not None
    return state


def error_outputs(driver) -> list[str]:
    """Texts of the error outputs (tracebacks) shown in the open notebook."""
    return driver.execute_script(
        """const w = window.jupyterapp.shell.currentWidget; const out = [];
           for (const c of w.content.widgets) {
             if (c.model.type !== "code") continue;
             for (let i = 0; i < c.model.outputs.length; i++) {
               const o = c.model.outputs.get(i);
               if (o.type === "error") out.push(String(o.toJSON().ename) + ": " + String(o.toJSON().evalue));
             }
           }
           return out;"""
    )


def validate(driver, timeout: float = 300) -> tuple[str, str]:
    """Click nbgrader's Validate button; return ("success" | "failed", the dialog's text)."""
    from selenium.webdriver.common.by import By

    button = wait_for(
        driver,
        lambda d: next(
            (b for b in d.find_elements(By.CSS_SELECTOR, ".validate-button") if b.is_displayed()), None
        ),
        30,
        "the Validate button in the notebook toolbar",
    )
    inner = button.find_elements(By.CSS_SELECTOR, "jp-button, button")
    (inner[0] if inner else button).click()

    def result(d):
        for dialog in d.find_elements(By.CSS_SELECTOR, ".jp-Dialog"):
            if dialog.find_elements(By.CSS_SELECTOR, ".validation-success"):
                return "success", dialog.text
            if dialog.find_elements(By.CSS_SELECTOR, ".validation-failed"):
                return "failed", dialog.text
            if "Validation failed" in dialog.text or "error" in dialog.text.lower():
                return "error", dialog.text
        return None

    return wait_for(driver, result, timeout, "nbgrader's validation result")


def close_dialog(driver) -> None:
    from selenium.webdriver.common.by import By

    for b in driver.find_elements(
        By.CSS_SELECTOR, ".jp-Dialog .jp-Dialog-button.jp-mod-accept, .jp-Dialog button.jp-mod-accept"
    ):
        if b.is_displayed():
            b.click()
            break
    wait_for(driver, lambda d: not d.find_elements(By.CSS_SELECTOR, ".jp-Dialog"), 10, "the dialog to close")
