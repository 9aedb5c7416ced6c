"""Splice a partial Python file into the original: small models often send only what changed.

A "whole file" reply that leaves out top-level functions or classes of the
original while redefining at least one of them is read as a partial file: each definition it
gives replaces the same-named one in the original (new ones are appended), new
imports are added after the original's imports, a top-level assignment replaces
the original's assignment to the same name, and everything else is kept. A class
that redefines some of the original's methods and omits others is spliced the same
way, method by method. A reply that keeps every definition is a real whole file and
is used as it is. (So a whole-file reply cannot delete a function; a SEARCH/REPLACE
block can.)
"""

from __future__ import annotations

import ast

_DEF = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
_FUNC = (ast.FunctionDef, ast.AsyncFunctionDef)


def _methods(node: ast.stmt) -> dict[str, ast.stmt]:
    body = node.body if isinstance(node, ast.ClassDef) else []
    return {n.name: n for n in body if isinstance(n, _FUNC)}


def _partial_class(old: ast.stmt, new: ast.stmt) -> bool:
    """A class in the reply that redefines some methods of the original and omits others."""
    if not (isinstance(old, ast.ClassDef) and isinstance(new, ast.ClassDef)):
        return False
    new_methods = _methods(new)
    return bool(new_methods) and bool(set(_methods(old)) - set(new_methods))


def _span(node: ast.stmt) -> tuple[int, int]:
    """0-based [start, end) line range of a statement, decorators included."""
    decorators = getattr(node, "decorator_list", [])
    start = min([node.lineno, *(d.lineno for d in decorators)])
    return start - 1, node.end_lineno or node.lineno


def _assigned_name(node: ast.stmt) -> str | None:
    if isinstance(node, ast.Assign) and len(node.targets) == 1:
        target = node.targets[0]
        return target.id if isinstance(target, ast.Name) else None
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return node.target.id
    return None


def splice_partial(original: str, reply: str) -> str | None:
    """The original with the reply's definitions spliced in, or None when the reply is whole."""
    try:
        old_tree, new_tree = ast.parse(original), ast.parse(reply)
    except SyntaxError:
        return None
    old_defs = {n.name: n for n in old_tree.body if isinstance(n, _DEF)}
    new_defs = {n.name: n for n in new_tree.body if isinstance(n, _DEF)}
    partial_classes = {
        name
        for name, node in new_defs.items()
        if name in old_defs and _partial_class(old_defs[name], node)
    }
    if not set(new_defs) & set(old_defs):  # nothing in common: not a piece of this file
        return None
    if not (set(old_defs) - set(new_defs) or partial_classes):  # complete: use it as it is
        return None
    old_lines = original.splitlines(keepends=True)
    if old_lines and not old_lines[-1].endswith("\n"):
        old_lines[-1] += "\n"
    new_lines = reply.splitlines(keepends=True)
    if new_lines and not new_lines[-1].endswith("\n"):
        new_lines[-1] += "\n"

    def text_of(node: ast.stmt) -> list[str]:
        start, end = _span(node)
        return new_lines[start:end]

    old_assigns = {name: n for n in old_tree.body if (name := _assigned_name(n))}
    replacements: list[tuple[int, int, list[str]]] = []
    appended: list[str] = []
    for name, node in new_defs.items():
        if name in partial_classes:  # splice method by method
            old_methods = _methods(old_defs[name])
            class_end = _span(old_defs[name])[1]
            for method_name, method in _methods(node).items():
                if method_name in old_methods:
                    start, end = _span(old_methods[method_name])
                    replacements.append((start, end, text_of(method)))
                else:
                    replacements.append((class_end, class_end, ["\n", *text_of(method)]))
        elif name in old_defs:
            start, end = _span(old_defs[name])
            replacements.append((start, end, text_of(node)))
        else:
            appended += ["\n", "\n", *text_of(node)]
    old_imports = {
        ast.unparse(n) for n in old_tree.body if isinstance(n, ast.Import | ast.ImportFrom)
    }
    new_imports: list[str] = []
    for node in new_tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom) and ast.unparse(node) not in old_imports:
            new_imports += text_of(node)
        elif (name := _assigned_name(node)) and name in old_assigns:
            start, end = _span(old_assigns[name])
            if old_lines[start:end] != text_of(node):
                replacements.append((start, end, text_of(node)))
    for start, end, lines in sorted(replacements, reverse=True):
        old_lines[start:end] = lines
    if new_imports:
        imports = [n for n in old_tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
        at = _span(imports[-1])[1] if imports else _docstring_end(old_tree)
        shift = sum(len(lines) - (end - start) for start, end, lines in replacements if end <= at)
        old_lines[at + shift : at + shift] = new_imports
    return "".join(old_lines + appended)


def _docstring_end(tree: ast.Module) -> int:
    first = tree.body[0] if tree.body else None
    if (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
    ):
        return first.end_lineno or 0
    return 0
