"""The house's layout, held by tests: layers import downward only, no cycles, no imports of
our own modules hidden inside functions, a light CLI path, and one installed namespace."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("agent", "eval", "graphs", "tools", "prompts")
# what each layer may import besides itself (`eval` never imports `agent`: ask mode is
# handed an assistant by the CLI)
ALLOWED = {
    "agent": {"eval", "graphs", "tools", "prompts"},
    "eval": {"tools", "prompts"},
    "graphs": {"tools", "prompts"},
    "tools": {"prompts"},
    "prompts": set(),
}
LAZY = {  # the only imports of our own modules inside functions, each with its reason
    "evident.agent": "evident.agent.assistant",  # `import evident.agent` stays light
    "evident.agent.llm": "evident.agent.llm.*",  # backends need extras; specs parse lightly
    "evident.agent.searching": "evident.agent.commands",  # results print before torch loads
}
HEAVY = ("torch", "open_clip", "chromadb", "transformers", "langgraph", "matplotlib", "scipy")


def _modules() -> dict[str, Path]:
    out = {"evident": ROOT / "__init__.py"}
    for layer in LAYERS:
        for path in (ROOT / layer).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(("evident", *parts))
            out[name.removesuffix(".__init__")] = path
    return out


MODULES = _modules()


def _imports(path: Path) -> tuple[set[str], set[str]]:
    """The evident modules `path` imports at module level, and inside functions."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    inner = {n for f in ast.walk(tree) if isinstance(f, ast.FunctionDef) for n in ast.walk(f)}
    top, lazy = set(), set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        found = {n for n in names if n in MODULES and n.startswith("evident.")}
        (lazy if node in inner else top).update(found)
    return top - {""}, lazy


GRAPH = {name: _imports(path) for name, path in MODULES.items()}


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_layers_import_downward_only():
    upward = [
        f"{m} -> {d}"
        for m, (top, lazy) in GRAPH.items()
        for d in top | lazy
        if _layer(m) and _layer(d) != _layer(m) and _layer(d) not in ALLOWED[_layer(m)]
    ]
    assert upward == []


def test_no_import_cycles():
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for d in sorted(GRAPH[m][0]):
            if state.get(d) == 1:
                cycles.append([*path[path.index(d) :], d] if d in path else [m, d])
            elif d not in state:
                visit(d, [*path, d])
        state[m] = 2

    for m in sorted(GRAPH):
        if m not in state:
            visit(m, [m])
    assert cycles == []


def test_no_imports_of_our_modules_inside_functions_but_the_three_lazy_doors():
    hidden = {m: sorted(lazy - {m}) for m, (_, lazy) in GRAPH.items() if lazy - {m}}
    assert set(hidden) == set(LAZY)
    assert hidden["evident.agent"] == ["evident.agent.assistant"]
    assert hidden["evident.agent.searching"] == ["evident.agent.commands"]
    assert all(d.startswith("evident.agent.llm.") for d in hidden["evident.agent.llm"])


def test_the_cli_parses_without_loading_heavy_packages():
    code = (
        "import sys, evident, evident.agent, evident.agent.cli; "
        "evident.agent.cli.build_parser(); "
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_heatmap_names_the_cli_offers_are_the_implemented_ones():
    from evident.tools.evidence.heatmaps import CAM_METHODS
    from evident.tools.evidence.methods import HEATMAP_METHODS

    assert tuple(CAM_METHODS) == HEATMAP_METHODS


@pytest.mark.timeout(180)
def test_installed_as_one_namespace(tmp_path):
    """`pip install .` puts `evident` (and only it) in site-packages, with the models and
    templates; `import evident.tools` works there and `import tools` does not."""
    target, source = tmp_path / "site", tmp_path / "source"
    junk = shutil.ignore_patterns(".*", "build", "dist", "*.egg-info", "__pycache__", "*-out")
    shutil.copytree(ROOT, source, ignore=junk)  # setuptools builds in the source tree
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(source)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    top = {p.name for p in target.iterdir() if not p.name.endswith(".dist-info")}
    assert top == {"evident", "bin"}
    assert (target / "evident/tools/models/evident-figures/open_clip_config.json").is_file()
    assert (target / "evident/prompts/system.j2").is_file()
    probe = (  # -I: no working folder, no PYTHONPATH; the install comes first on the path
        f"import sys; sys.path.insert(0, {str(target)!r}); "
        "import importlib.util as u, evident.tools.limits as m; "
        "print(m.__file__); print(u.find_spec('tools'), u.find_spec('agent'))"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-c", probe], capture_output=True, text=True, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    where, missing = out.stdout.splitlines()
    assert where.startswith(str(target)) and missing == "None None"
