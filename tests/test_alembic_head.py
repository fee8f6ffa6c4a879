"""course_tools.grading.alembic_head: a new gradebook gets the revision nbgrader's own subprocess gives it."""

from __future__ import annotations

import sqlite3

import nbgrader.api
from nbgrader.api import Gradebook

from course_tools.grading import alembic_head
from course_tools.paths import env_with_venv


def _stamp(path) -> list[tuple]:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT version_num FROM alembic_version").fetchall()


def _tables(path) -> list[tuple]:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT name, sql FROM sqlite_master ORDER BY name").fetchall()


def test_in_process_head_is_what_nbgraders_alembic_subprocess_prints(monkeypatch):
    monkeypatch.setenv("PATH", env_with_venv()["PATH"])  # nbgrader runs `alembic` from PATH
    original = getattr(
        nbgrader.api.get_alembic_version, "__wrapped_original__", nbgrader.api.get_alembic_version
    )
    assert alembic_head.current_head() == original()


def test_a_gradebook_made_with_the_shortcut_equals_one_nbgrader_makes(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", env_with_venv()["PATH"])
    plain, fast = tmp_path / "plain.db", tmp_path / "fast.db"
    original = getattr(
        nbgrader.api.get_alembic_version, "__wrapped_original__", nbgrader.api.get_alembic_version
    )
    monkeypatch.setattr(nbgrader.api, "get_alembic_version", original)
    Gradebook(f"sqlite:///{plain}").close()
    alembic_head.install()
    alembic_head.install()  # idempotent: still one wrapper around nbgrader's function
    assert nbgrader.api.get_alembic_version.__wrapped_original__ is original
    Gradebook(f"sqlite:///{fast}").close()
    assert _stamp(fast) == _stamp(plain) and len(_stamp(fast)) == 1
    assert _tables(fast) == _tables(plain)


def test_an_unreadable_script_folder_falls_back_to_nbgraders_way(monkeypatch):
    calls = []
    monkeypatch.setattr(nbgrader.api, "get_alembic_version", lambda: calls.append(1) or "from-subprocess")
    alembic_head.install()

    def broken() -> str:
        raise FileNotFoundError("no alembic folder")

    monkeypatch.setattr(alembic_head, "current_head", broken)
    assert nbgrader.api.get_alembic_version() == "from-subprocess" and calls == [1]
