"""Size rule of issue 38 (docs/design.md section 7): no backend module over 350 lines, no function over 60.

Usage (repository root)::

    python benchmarks/code_size.py                       # check backend/ against docs/design.md's exceptions
    python benchmarks/code_size.py --allow backend/cli.py  # also let one file (and its functions) pass

Counts come from the source itself (``ast``): a module's length is its number of lines; a function's is
from its ``def`` line to its last line (docstring and nested functions included, decorators not); methods
and nested functions are named ``Class.method`` / ``outer.inner``. Every module and function over its limit
is printed, one line each, with why it passes: an entry of the "Size exceptions" table in docs/design.md
(``| `path` or `path::function` | reason |``, a reason required), or ``--allow``. Exit status 1 when any is
over and not excepted, 0 otherwise; exceptions that nothing needs any more are printed as stale (no
failure).
"""
from __future__ import annotations

import argparse
import ast
import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_MODULE_LINES = 350
MAX_FUNCTION_LINES = 60
#: The heading line in docs/design.md that the exceptions table follows.
EXCEPTIONS_MARKER = "Size exceptions"
_ROW = re.compile(r"^\|\s*`([^`]+)`\s*\|\s*(.*?)\s*\|\s*$")


@dataclass
class Offender:
    """One module or function over its limit; ``key`` is ``path`` or ``path::qualified.name``."""

    key: str
    lines: int
    limit: int
    excused_by: str | None = None  # the reason (design.md) or "allowed" (--allow); None: a failure


def read_exceptions(design: Path) -> dict[str, str]:
    """``{path or path::function: reason}`` from the table after the ``Size exceptions`` line of ``design``.

    Raises:
        ValueError: a row without a reason (every exception must say why).
    """
    rows: dict[str, str] = {}
    state = "before"  # -> "marker" (the line naming the table seen) -> "table" (inside it)
    for line in design.read_text().splitlines():
        if state == "before":
            state = "marker" if EXCEPTIONS_MARKER in line else state
            continue
        if not line.startswith("|"):
            if state == "table":
                break
            continue
        state = "table"
        m = _ROW.match(line)
        if m is None:
            continue  # the header row and its separator
        if not m.group(2):
            raise ValueError(f"{design}: the size exception {m.group(1)!r} gives no reason")
        rows[m.group(1)] = m.group(2)
    return rows


def functions(tree: ast.AST, prefix: str = "") -> list[tuple[str, int]]:
    """``[(qualified name, lines)]`` of every function and method under ``tree``, nested ones included."""
    out = []
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            out.append((prefix + node.name, node.end_lineno - node.lineno + 1))
            out += functions(node, prefix + node.name + ".")
        elif isinstance(node, ast.ClassDef):
            out += functions(node, prefix + node.name + ".")
        else:
            out += functions(node, prefix)
    return out


def measure(root: Path, base: Path) -> list[Offender]:
    """Every module under ``root`` over ``MAX_MODULE_LINES`` and function over ``MAX_FUNCTION_LINES``;
    paths relative to ``base`` with ``/``."""
    found = []
    for path in sorted(root.rglob("*.py")):
        text = path.read_text()
        rel = path.relative_to(base).as_posix()
        n = len(text.splitlines())
        if n > MAX_MODULE_LINES:
            found.append(Offender(rel, n, MAX_MODULE_LINES))
        for name, length in functions(ast.parse(text, filename=str(path))):
            if length > MAX_FUNCTION_LINES:
                found.append(Offender(f"{rel}::{name}", length, MAX_FUNCTION_LINES))
    return found


def check(root: Path, base: Path, exceptions: dict[str, str], allow: set[str]) -> list[Offender]:
    """:func:`measure` with ``excused_by`` set from ``exceptions`` (exact key) or ``allow`` (a file: its
    module and all its functions)."""
    found = measure(root, base)
    for o in found:
        path = o.key.split("::")[0]
        if o.key in exceptions:
            o.excused_by = exceptions[o.key]
        elif path in allow:
            o.excused_by = "allowed (--allow)"
    return found


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", type=Path, default=ROOT / "backend", help="folder to check (default backend/)")
    p.add_argument("--design", type=Path, default=ROOT / "docs" / "design.md",
                   help="the file holding the 'Size exceptions' table (default docs/design.md)")
    p.add_argument("--allow", action="append", default=[], metavar="PATH",
                   help="a file (relative to the repository, e.g. backend/cli.py) that passes whatever its sizes")
    args = p.parse_args(argv)
    exceptions = read_exceptions(args.design)
    found = check(args.root.resolve(), ROOT, exceptions, set(args.allow))
    for o in found:
        verdict = f"excepted: {o.excused_by}" if o.excused_by else "OVER THE LIMIT"
        print(f"{o.key}: {o.lines} lines (limit {o.limit}) - {verdict}")
    for key in sorted(set(exceptions) - {o.key for o in found}):
        print(f"stale exception (within the limits now): {key}")
    failures = [o for o in found if not o.excused_by]
    print(f"{len(failures)} over the limits without an exception" if failures else "size rule kept")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
