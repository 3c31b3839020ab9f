"""The README's JavaScript workflow is the runnable clients/js/render.mjs, word for word (the
file runs against the real service in test_render_e2e.py)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "clients" / "js" / "render.mjs"


def test_the_readme_shows_the_script_as_it_is() -> None:
    readme = (ROOT / "README.md").read_text()
    block = readme[readme.index("### JavaScript") :].split("```js\n", 1)[1].split("```", 1)[0]
    assert block == SCRIPT.read_text()


@pytest.mark.skipif(
    shutil.which("node") is None, reason="node is not installed (apt-get install nodejs)"
)
def test_node_accepts_the_script() -> None:
    run = subprocess.run(
        ["node", "--check", str(SCRIPT)], capture_output=True, text=True, timeout=60, check=False
    )
    assert run.returncode == 0, run.stderr
