"""The package's shape: no import cycle, small modules, README's table of modules true, the
interfaces implementations plug into, and `qa ask` importing only what answering needs."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "qa"
MAX_LINES = 350  # a longer module must say why in README's "Modules above 350 lines"
HEAVY = ("torch", "transformers", "sentence_transformers", "gradio", "matplotlib", "pandas", "onnx", "ray")


def modules() -> dict[str, Path]:
    """Module name -> file, for every module of the package."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The package's modules ``path`` imports, at any depth of its code (a function-level import is
    still a dependency), except under ``if TYPE_CHECKING:`` (annotations only, never run)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for n in ast.walk(node)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        found.update(n for n in names if n in known)
    return found


@pytest.mark.unit
def test_no_import_cycle():
    mods = modules()
    graph = {name: imports_of(path, set(mods)) - {name} for name, path in mods.items()}
    # a package's __init__ is imported with each of its modules: "qa" itself is no edge to follow
    graph = {name: {d for d in deps if d not in ("qa", "qa.eval")} for name, deps in graph.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(name: str) -> None:
        state[name] = 1
        stack.append(name)
        for dep in sorted(graph[name]):
            if state.get(dep) == 1:
                cycle = stack[stack.index(dep):] + [dep]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep)
        stack.pop()
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)


@pytest.mark.unit
def test_modules_are_small_or_say_why():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    why = readme.split("### Modules above 350 lines", 1)[1].split("\n#", 1)[0] if "### Modules above 350 lines" in readme else ""
    long = {str(p.relative_to(ROOT)): len(p.read_text(encoding="utf-8").splitlines()) for p in modules().values()}
    unexplained = {p: n for p, n in long.items() if n > MAX_LINES and f"`{p}`" not in why}
    assert not unexplained, f"modules above {MAX_LINES} lines not explained in README: {unexplained}"


@pytest.mark.unit
def test_readmes_table_names_every_module_and_only_those():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme.split("## How it works", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"^\| [\w ]+ \| `(qa/[\w/]+\.py)` \|", table, re.M))
    files = {str(p.relative_to(ROOT)) for p in modules().values() if p.name != "__init__.py"}
    assert files - named == set(), "modules missing from README's How it works"
    assert named - files == set(), "README's How it works names modules that do not exist"


@pytest.mark.unit
def test_the_implementations_fit_their_protocols(tmp_path):
    from helpers_core import HashEncoder
    from qa.protocols import Retriever, SpanReader, TextEncoder
    from qa.reader import Reader
    from qa.retrieve import RETRIEVERS

    assert isinstance(HashEncoder(), TextEncoder)
    reader = Reader(tmp_path, "sha", maker=None, session=None)
    assert isinstance(reader, SpanReader)
    assert set(RETRIEVERS) == {"bm25", "dense"}
    fits: list[Retriever] = list(RETRIEVERS.values())  # annotated: a type checker holds them to the protocol
    assert all(callable(r) for r in fits)


@pytest.mark.integration
def test_qa_ask_imports_no_heavy_library(idx):
    """`qa ask` needs numpy, faiss, onnxruntime and tokenizers only: torch, transformers,
    sentence-transformers, gradio, matplotlib and ray (extras) are never imported on its path."""
    script = (
        "import json, sys, runpy\n"
        "sys.argv = ['qa', 'ask', '--corpus', sys.argv[1], '--index', sys.argv[2], '--json', "
        "'How many drones has Russia purchased from Iran?']\n"
        "try:\n"
        "    runpy.run_module('qa.cli', run_name='__main__')\n"
        "except SystemExit as e:\n"
        "    code = e.code\n"
        f"print(json.dumps({{'code': code, 'heavy': [m for m in {HEAVY!r} if m in sys.modules]}}))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", script, str(idx.corpus), str(idx.index)], capture_output=True,
                          text=True, env=env, timeout=120)
    last = json.loads(done.stdout.strip().splitlines()[-1])
    assert last == {"code": 0, "heavy": []}, done.stderr
    assert "1,700" in done.stdout
