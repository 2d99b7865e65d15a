"""The example notebook, executed headless by a real Jupyter kernel, and its HTML checked."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).parents[1] / "examples" / "assistant.ipynb"


@pytest.fixture
def kernel(tmp_path, monkeypatch) -> str:
    """A `python3` kernelspec that runs this interpreter (the venv's `python3` spec names
    plain `python`, whichever that is on PATH)."""
    spec = tmp_path / "jupyter" / "kernels" / "python3"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "evident", "language": "python"})
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    return "python3"


def test_the_example_notebook_runs_and_shows_the_answer(kernel, tmp_path):
    nbformat = pytest.importorskip("nbformat")
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit it clean"
    client = NotebookClient(
        nb, kernel_name=kernel, timeout=180, resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    htmls = [
        o["data"]["text/html"]
        for c in nb.cells if c.cell_type == "code"
        for o in c.get("outputs", []) if "text/html" in o.get("data", {})
    ]  # fmt: skip
    assert len(htmls) == 3  # the first answer and two follow-ups
    first, contrast, method = htmls
    assert 'class="evident-answer"' in first and "Grounding:" in first
    assert len(re.findall(r'<img src="data:image/png;base64,', first)) == 5
    assert "I ranked 5 images for &#x27;a bar chart with a legend&#x27;" in first
    assert "#1 ranks above #2 by a margin of" in contrast
    assert "hirescam heatmap" in method
    printed = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    assert "grounding: {'sentences'" in printed and "search_images" in printed
    counts = re.search(r"'cited': (\d+), 'valid': (\d+), 'supported': (\d+)", printed)
    cited, valid, supported = map(int, counts.groups())
    assert cited >= 1 and cited == valid == supported  # the bundled model's checked evidence
    assert not [
        o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"
    ]
