"""A feedback preprocessor that keeps hidden tests hidden.

nbgrader's generate_feedback renders the autograded notebook, whose test cells
hold the hidden tests again (upstream issue 917), and whose error tracebacks
quote the lines around the failing assert. This preprocessor removes the hidden
regions from test cells and reduces each error in a test cell to its exception
name and message, which is exactly what the student should see: what failed
and why, not the code that checked it.
"""

from __future__ import annotations

from nbconvert.preprocessors import Preprocessor
from nbformat import NotebookNode
from traitlets import Bool, Unicode

from .cells import HIDDEN_BEGIN, HIDDEN_END, nbgrader_meta

HIDDEN_NOTE = "# (hidden tests were run here; their code is not shown)"


class HideHiddenTests(Preprocessor):
    """Strip hidden-test regions and traceback context from grade cells before rendering feedback."""

    enabled = Bool(True, help="nbconvert preprocessors are off unless enabled").tag(config=True)
    begin = Unicode(HIDDEN_BEGIN).tag(config=True)
    end = Unicode(HIDDEN_END).tag(config=True)

    def _strip_source(self, source: str) -> str:
        out: list[str] = []
        hidden = False
        for line in source.split("\n"):
            if self.begin in line:
                hidden = True
                indent = line[: len(line) - len(line.lstrip())]
                out.append(indent + HIDDEN_NOTE)
            elif self.end in line:
                hidden = False
            elif not hidden:
                out.append(line)
        return "\n".join(out)

    def preprocess_cell(self, cell: NotebookNode, resources: dict, index: int):
        meta = nbgrader_meta(cell)
        is_test = bool(meta.get("grade")) and not bool(meta.get("solution"))
        if cell.get("cell_type") != "code" or not is_test:
            return cell, resources
        cell.source = self._strip_source(cell.source)
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                output["traceback"] = [f"{output.get('ename', 'Error')}: {output.get('evalue', '')}"]
        return cell, resources
