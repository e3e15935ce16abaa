"""The size limits issue 14 set, checked on every CI run beside ruff's complexity rules (which
cover branches and statements, not a class's length or its constructor's collaborators):
no class over 200 lines, no constructor taking more than five collaborators, no function over
80 lines, except the measured hot paths named in KEPT with the reason they stay whole."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

CLASS_LINES = 200
FUNCTION_LINES = 80
COLLABORATORS = 5

# "path:qualified name" -> why it stays as it is.
KEPT: dict[str, str] = {
    "cdc_offload/source/binlog/reader.py:FastBinlogReader": (
        "the header-only reader; most of its length is `_events`, below"
    ),
    "cdc_offload/source/binlog/reader.py:FastBinlogReader._events": (
        "the measured hot path (benchmarks/bench_reader.py, ~528,000 events/s): the stream's state in "
        "locals and every branch inline, because a call or an attribute lookup per event is its cost"
    ),
    "cdc_offload/source/binlog/reader.py:FastBinlogReader.__init__": (
        "the same constructor as the library reader it stands in for (settings, start and the read's options)"
    ),
}


def _length(node: ast.AST) -> int:
    return int(getattr(node, "end_lineno", 0)) - int(getattr(node, "lineno", 0)) + 1


def _collaborators(init: ast.FunctionDef) -> int:
    args = init.args
    return len(args.posonlyargs) + len(args.args) + len(args.kwonlyargs) - 1  # less `self`


def problems(root: Path) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        stack: list[tuple[ast.AST, str]] = [(tree, "")]
        while stack:
            node, prefix = stack.pop()
            for child in ast.iter_child_nodes(node):
                if not isinstance(child, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                    stack.append((child, prefix))
                    continue
                name = f"{prefix}{child.name}"
                where = f"{path.as_posix()}:{name}"
                stack.append((child, name + "."))
                if where in KEPT:
                    continue
                if isinstance(child, ast.ClassDef) and _length(child) > CLASS_LINES:
                    found.append(f"{where}: class of {_length(child)} lines (limit {CLASS_LINES})")
                elif not isinstance(child, ast.ClassDef) and _length(child) > FUNCTION_LINES:
                    found.append(f"{where}: function of {_length(child)} lines (limit {FUNCTION_LINES})")
                if isinstance(child, ast.FunctionDef) and child.name == "__init__":
                    count = _collaborators(child)
                    if count > COLLABORATORS:
                        found.append(f"{where}: constructor takes {count} collaborators (limit {COLLABORATORS})")
    return found


if __name__ == "__main__":
    found = problems(Path(sys.argv[1] if len(sys.argv) > 1 else "cdc_offload"))
    for line in found:
        print(line)
    if found:
        print("split it, or name it in .ci/shape.py's KEPT with the measured reason it stays whole", file=sys.stderr)
    sys.exit(1 if found else 0)
