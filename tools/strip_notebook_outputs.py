"""Pre-commit hook: remove outputs and execution counts from notebooks (they stay in git
without them; the test suite runs them). Exits 1 when it changed a file, like other fixers."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def strip(path: Path) -> bool:
    """Strip one notebook in place; True when it changed."""
    text = path.read_text(encoding="utf-8")
    notebook = json.loads(text)
    for cell in notebook.get("cells", []):
        if cell.get("cell_type") == "code":
            cell["outputs"], cell["execution_count"] = [], None
    cleaned = json.dumps(notebook, indent=1, ensure_ascii=False) + "\n"
    if cleaned != text:
        path.write_text(cleaned, encoding="utf-8")
        return True
    return False


if __name__ == "__main__":
    changed = [p for p in sys.argv[1:] if strip(Path(p))]
    for p in changed:
        sys.stderr.write(f"stripped outputs: {p}\n")
    sys.exit(1 if changed else 0)
