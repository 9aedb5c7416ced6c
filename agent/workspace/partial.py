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

What fixloop's outline of a file looks like is read as "not sent": a definition whose body
is only ``...`` (a signature from the outline, copied back) and ``NAME = ...`` leave the
original's definition as it is, unless the original is such a stub itself. A method sent
on its own (``def name(self, ...)``, at the top level or still indented) replaces the one
method of that name in the original's classes. A definition sent without its docstring, or
with only its first lines (what fixloop's view shows of a long one), keeps the original's.
"""

from __future__ import annotations

import ast
import textwrap

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


def _is_stub(node: ast.stmt) -> bool:
    """An outline entry: a def whose body is only ``...`` (after a docstring), a class of
    such stubs, or ``NAME = ...``."""
    if isinstance(node, _FUNC):
        body = node.body
        if body and _is_docstring(body[0]) and len(body) > 1:
            body = body[1:]
        return len(body) == 1 and _is_ellipsis(body[0])
    if isinstance(node, ast.ClassDef):
        return all(_is_stub(n) or _is_ellipsis(n) or _is_docstring(n) for n in node.body)
    if isinstance(node, ast.Assign | ast.AnnAssign):
        value = node.value
        return isinstance(value, ast.Constant) and value.value is Ellipsis
    return False


def _is_ellipsis(node: ast.stmt) -> bool:
    return (
        isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and node.value.value is Ellipsis
    )


def _is_docstring(node: ast.stmt) -> bool:
    return (
        isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    )


def _parse(reply: str) -> tuple[ast.Module, str] | None:
    """The reply parsed as it is, or dedented (a method sent with its class's indentation)."""
    for text in (reply, textwrap.dedent(reply)):
        try:
            return ast.parse(text), text
        except SyntaxError:
            continue
    return None


def _drop_stubs(tree: ast.Module, old_tree: ast.Module) -> None:
    """Remove outline entries the reply copied back, so the original's code stays."""
    old_stubs = {n.name for n in old_tree.body if isinstance(n, _DEF) and _is_stub(n)}
    old_stubs |= {name for n in old_tree.body if _is_stub(n) and (name := _assigned_name(n))}
    kept: list[ast.stmt] = []
    for node in tree.body:
        name = node.name if isinstance(node, _DEF) else _assigned_name(node)
        if _is_stub(node) and name not in old_stubs:
            continue
        if isinstance(node, ast.ClassDef):
            old_cls = next(
                (n for n in old_tree.body if isinstance(n, ast.ClassDef) and n.name == node.name),
                None,
            )
            old_methods = _methods(old_cls) if old_cls is not None else {}
            body = [
                n
                for n in node.body
                if not (
                    isinstance(n, _FUNC)
                    and _is_stub(n)
                    and n.name in old_methods
                    and not _is_stub(old_methods[n.name])
                )
            ]
            if len(body) < len(node.body) and not any(isinstance(n, _FUNC) for n in body):
                continue  # only the outline of the class: not sent
            node.body = body
        kept.append(node)
    tree.body = kept


def _takes_self(node: ast.stmt) -> bool:
    """A def whose first parameter is `self` or `cls`: a method, wherever it was written."""
    return (
        isinstance(node, _FUNC)
        and bool(node.args.args)
        and node.args.args[0].arg in ("self", "cls")
    )


def _lone_method(
    old_tree: ast.Module, node: ast.stmt
) -> tuple[ast.ClassDef, ast.FunctionDef | ast.AsyncFunctionDef] | None:
    """The one method of the original's classes a top-level `def name(self, ...)` replaces."""
    if not isinstance(node, _FUNC) or not node.args.args:
        return None
    if node.args.args[0].arg not in ("self", "cls"):
        return None
    found = [
        (cls, m)
        for cls in old_tree.body
        if isinstance(cls, ast.ClassDef)
        for m in cls.body
        if isinstance(m, _FUNC) and m.name == node.name
    ]
    return found[0] if len(found) == 1 else None


def splice_partial(original: str, reply: str) -> str | None:
    """The original with the reply's definitions spliced in, or None when the reply is whole."""
    try:
        old_tree = ast.parse(original)
    except SyntaxError:
        return None
    parsed = _parse(reply)
    if parsed is None:
        return None
    new_tree, reply = parsed
    _drop_stubs(new_tree, old_tree)
    old_lines = original.splitlines(keepends=True)
    if old_lines and not old_lines[-1].endswith("\n"):
        old_lines[-1] += "\n"
    old_defs = {n.name: n for n in old_tree.body if isinstance(n, _DEF)}
    new_defs = {n.name: n for n in new_tree.body if isinstance(n, _DEF)}
    methods = {
        name: found
        for name, node in new_defs.items()
        if (name not in old_defs or (_takes_self(node) and not _takes_self(old_defs[name])))
        and (found := _lone_method(old_tree, node))
    }
    if methods and not (set(new_defs) - set(methods)) & set(old_defs):
        return _splice_methods(old_lines, reply, new_defs, methods)
    partial_classes = {
        name
        for name, node in new_defs.items()
        if name in old_defs and _partial_class(old_defs[name], node)
    }
    if not set(new_defs) & set(old_defs):  # nothing in common: not a piece of this file
        return None
    if not (set(old_defs) - set(new_defs) or partial_classes):  # complete: use it as it is
        return None
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
                    old_method = old_methods[method_name]
                    start, end = _span(old_method)
                    text = _keep_docstring(old_method, old_lines, method, text_of(method))
                    replacements.append((start, end, text))
                else:
                    replacements.append((class_end, class_end, ["\n", *text_of(method)]))
        elif name in old_defs:
            start, end = _span(old_defs[name])
            text = _keep_docstring(old_defs[name], old_lines, node, text_of(node))
            replacements.append((start, end, text))
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


def _splice_methods(
    old_lines: list[str],
    reply: str,
    new_defs: dict[str, ast.stmt],
    methods: dict[str, tuple[ast.ClassDef, ast.FunctionDef | ast.AsyncFunctionDef]],
) -> str | None:
    """Each lone method of the reply put in place of its namesake, at the method's indentation.

    Anything else the reply defines at the top level makes it not a lone-method reply (None).
    """
    if set(new_defs) - set(methods):
        return None
    new_lines = reply.splitlines(keepends=True)
    if new_lines and not new_lines[-1].endswith("\n"):
        new_lines[-1] += "\n"
    replacements = []
    for name, (_cls, old_method) in methods.items():
        start, end = _span(old_method)
        indent = old_lines[start][: len(old_lines[start]) - len(old_lines[start].lstrip())]
        n_start, n_end = _span(new_defs[name])
        text = _keep_docstring(old_method, old_lines, new_defs[name], new_lines[n_start:n_end])
        body = textwrap.indent(textwrap.dedent("".join(text)), indent)
        replacements.append((start, end, body.splitlines(keepends=True)))
    for start, end, lines in sorted(replacements, reverse=True):
        old_lines[start:end] = lines
    return "".join(old_lines)


def _docstring(node: ast.stmt) -> ast.Expr | None:
    body = getattr(node, "body", [])
    return body[0] if body and _is_docstring(body[0]) else None  # type: ignore[return-value]


def _doc_words(node: ast.Expr) -> list[str]:
    value = node.value.value  # type: ignore[attr-defined]
    return [ln.strip() for ln in str(value).splitlines() if ln.strip()]


def _keep_docstring(
    old: ast.stmt, old_lines: list[str], new: ast.stmt, new_text: list[str]
) -> list[str]:
    """The reply's definition with the original's docstring where the reply left it out or
    sent it shortened (fixloop's view shows only a docstring's first lines), re-indented.
    `new_text` are the definition's lines, starting at its first line."""
    old_doc, new_doc = _docstring(old), _docstring(new)
    new_body = getattr(new, "body", [])
    if old_doc is None or not new_body:
        return new_text
    if new_doc is not None:
        old_words, new_words = _doc_words(old_doc), _doc_words(new_doc)
        if len(new_words) >= len(old_words) or old_words[: len(new_words)] != new_words:
            return new_text  # the reply's own docstring
    first = _span(new)[0]
    doc_lines = old_lines[old_doc.lineno - 1 : old_doc.end_lineno]
    old_indent = doc_lines[0][: len(doc_lines[0]) - len(doc_lines[0].lstrip())]
    anchor = new_text[new_body[0].lineno - 1 - first]
    new_indent = anchor[: len(anchor) - len(anchor.lstrip())]
    doc = [
        new_indent + ln[len(old_indent) :] if ln.startswith(old_indent) else ln for ln in doc_lines
    ]
    if new_doc is not None:
        a, b = new_doc.lineno - 1 - first, (new_doc.end_lineno or new_doc.lineno) - first
    else:
        a = b = new_body[0].lineno - 1 - first
    return [*new_text[:a], *doc, *new_text[b:]]


def _docstring_end(tree: ast.Module) -> int:
    first = tree.body[0] if tree.body else None
    if (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
    ):
        return first.end_lineno or 0
    return 0
