"""The layout's habit that import-linter cannot check: an import inside a function says, on its line, why it is there.

Imports belong at the top of the file. One inside a function (or method) is allowed only for an optional or heavy
dependency (torch, transformers, chromadb, llama_cpp, openai, ...) or a comply module that pulls one in at import
time, and then carries a comment saying why (`# lazy: torch takes seconds to import; comply --help must not wait`).
A light import hidden in a function to dodge an import loop is a layering bug: move it to the top and fix the loop.
"""

from __future__ import annotations

import ast
import io
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("assistant", "ingest", "eval", "finetune")


def _comment_lines(source: str) -> set[int]:
    """The line numbers that carry a comment (a real `#` token, not one inside a string)."""
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    return {token.start[0] for token in tokens if token.type == tokenize.COMMENT}


def _imports_in_functions(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement with a function or method somewhere above it."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)) and in_function:
                found.append(child)
            visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(tree, False)
    return found


def uncommented_imports_in_functions(path: Path, root: Path = ROOT) -> list[str]:
    """`path:line: statement` (path relative to `root`) for each import inside a function with no comment on any of
    its lines."""
    source = path.read_text(encoding="utf-8")
    comments = _comment_lines(source)
    lines = source.splitlines()
    bare = []
    for node in _imports_in_functions(ast.parse(source, filename=str(path))):
        span = range(node.lineno, (node.end_lineno or node.lineno) + 1)
        if not comments.intersection(span):
            bare.append(f"{path.relative_to(root)}:{node.lineno}: {lines[node.lineno - 1].strip()}")
    return bare


def python_files() -> list[Path]:
    return sorted(path for package in PACKAGES for path in (ROOT / package).rglob("*.py"))


def test_the_scan_sees_imports_in_functions_and_methods_and_their_comments(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import os\n"
        "def f():\n"
        "    import json\n"
        "    import torch  # lazy: heavy\n"
        "class C:\n"
        "    def m(self):\n"
        "        from x import (  # lazy: optional\n"
        "            y,\n"
        "        )\n"
        "        from z import w\n"
        "        s = '# not a comment'; import q\n",
        encoding="utf-8",
    )
    bare = uncommented_imports_in_functions(sample, root=tmp_path)
    assert [entry.split(":")[1] for entry in bare] == ["3", "10", "11"]


def test_every_import_inside_a_function_says_why_on_its_line():
    files = python_files()
    assert len(files) > 50, "the packages were not found"
    bare = [entry for path in files for entry in uncommented_imports_in_functions(path)]
    assert not bare, (
        f"{len(bare)} imports inside functions with no comment saying why; hoist each to the top of its file, or, "
        "for an optional or heavy dependency, keep it and say why on its line:\n" + "\n".join(bare)
    )
