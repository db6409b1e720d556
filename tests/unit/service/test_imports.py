"""Import boundaries (STYLE.md section 2): service never imports training; api/ never imports torch,
transformers or faiss; engine/ never imports fastapi/starlette, api or settings; corpus/ never imports torch or
the engine; only encoder.py (and quantize.py and prepack.py, the layers it swaps in, and reranker.py, the
artifact's second reading) import torch, only encoder.py transformers, only index.py faiss."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SERVICE = Path(__file__).resolve().parents[3] / "service"


def imports_of(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def files(folder: str = "") -> list[Path]:
    return sorted((SERVICE / folder).rglob("*.py"))


def offenders(paths: list[Path], forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    found = {}
    for path in paths:
        bad = sorted(n for n in imports_of(path) if n.split(".")[0] in forbidden or n.startswith(forbidden))
        if bad:
            found[str(path.relative_to(SERVICE))] = bad
    return found


def test_the_service_tree_is_there():
    assert len(files()) > 20


@pytest.mark.parametrize(("folder", "forbidden"), [
    ("", ("training",)),
    ("api", ("torch", "transformers", "faiss", "sentence_transformers")),
    ("engine", ("fastapi", "starlette", "service.api", "service.settings", "service.corpus")),
    ("console", ("torch", "transformers", "faiss", "sentence_transformers", "service.engine", "service.corpus")),
    ("corpus", ("torch", "transformers", "sentence_transformers", "fastapi", "starlette", "service.engine",
                "service.api", "service.settings")),
])
def test_layer_boundaries(folder, forbidden):
    assert offenders(files(folder), forbidden) == {}


@pytest.mark.parametrize(("module", "owners"), [
    # quantize, prepack: the int8 and prepacked layers the encoder swaps in; reranker: the artifact's second
    # reading (match head)
    ("torch", {"engine/encoder.py", "engine/quantize.py", "engine/prepack.py", "engine/reranker.py"}),
    ("transformers", {"engine/encoder.py"}),
    ("faiss", {"corpus/index.py"}),
])
def test_heavy_libraries_have_few_owners(module, owners):
    users = {str(p.relative_to(SERVICE)) for p in files() if any(n.split(".")[0] == module for n in imports_of(p))}
    assert users == owners


def test_importing_the_app_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, service.app; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=SERVICE.parent).stdout.strip()
    assert out == "False"
