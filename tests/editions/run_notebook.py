"""Execute a notebook with this interpreter's own kernel and print, as JSON, the cells that raised
(``tests/test_edition.py`` runs it with a student edition's interpreter).

Usage: python run_notebook.py NOTEBOOK
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import nbclient
import nbformat


def failing_cells(path: Path) -> list[dict]:
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=600, allow_errors=True,
                                     resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    return [{"cell": index, "error": output["ename"], "message": output["evalue"][:500]}
            for index, cell in enumerate(notebook.cells) for output in cell.get("outputs", [])
            if output.get("output_type") == "error"]


if __name__ == "__main__":
    print(json.dumps(failing_cells(Path(sys.argv[1]))))
