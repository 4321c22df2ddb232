"""Reading executed notebooks the way an operator reads them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat


def outputs(path: Path) -> list[dict[str, Any]]:
    """Every output of every code cell of an executed notebook."""
    nb = nbformat.read(str(path), as_version=4)
    return [out for cell in nb.cells if cell.cell_type == "code" for out in cell.get("outputs", [])]


def text_of(path: Path) -> str:
    """The text an operator reads in an executed notebook: streams and plain-text results."""
    parts = []
    for out in outputs(path):
        if out["output_type"] == "stream":
            parts.append(out["text"])
        elif "data" in out:
            parts.append(out["data"].get("text/plain", ""))
    return "\n".join(parts)


def errors_of(path: Path) -> list[str]:
    """'Name: message' of every error output."""
    return [f"{o['ename']}: {o['evalue']}" for o in outputs(path) if o["output_type"] == "error"]
