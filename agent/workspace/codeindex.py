"""An AST index of a repository's Python files: definitions, imports, and what code refers to.

What the relevance context (:mod:`agent.workspace.context`) is built from:

* every top-level function, class, method and module-level variable of a file, with its
  line span (decorators included) and a one-line signature for outlines;
* the names a module binds by importing (absolute, ``src/`` layout, relative, ``*``), so a
  name used in a function resolves to the definition it means, through re-exports in a
  package's ``__init__.py``;
* the innermost function or method enclosing a line (for traceback frames);
* the definitions a function refers to: names it loads, ``module.attr``, ``self.method``,
  ``Class.method``, and the methods of a class it uses that it calls by attribute name.

Files are parsed lazily, once; a file that does not parse has no definitions.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import PurePosixPath

_FUNC = (ast.FunctionDef, ast.AsyncFunctionDef)
_DEF = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
_ROOTS = ("", "src/", "lib/")
_MAX_HOPS = 4  # re-export chains followed (pkg/__init__.py -> pkg/core.py -> ...)


@dataclass(frozen=True)
class Definition:
    """A function, class, method or module-level variable of one file."""

    path: str
    name: str  # qualified within its module: "f", "C", "C.m"
    kind: str  # "function", "class", "method", "variable"
    start: int  # first line, 1-based, decorators included
    end: int  # last line, 1-based, inclusive
    node: ast.AST = field(compare=False, hash=False, repr=False)

    @property
    def key(self) -> tuple[str, str]:
        return (self.path, self.name)

    @property
    def n_lines(self) -> int:
        return self.end - self.start + 1

    @property
    def owner(self) -> str | None:
        """The class a method belongs to."""
        return self.name.rsplit(".", 1)[0] if self.kind == "method" else None


@dataclass(frozen=True)
class ModuleRef:
    """A name bound to a module of the repository (``import pkg.mod as m``)."""

    path: str


def span(node: ast.AST) -> tuple[int, int]:
    """1-based inclusive line range of a statement, decorators included."""
    decorators = getattr(node, "decorator_list", [])
    start = min([node.lineno, *(d.lineno for d in decorators)])  # type: ignore[attr-defined]
    return start, node.end_lineno or node.lineno  # type: ignore[attr-defined]


def _assigned_names(node: ast.stmt) -> list[str]:
    if isinstance(node, ast.Assign):
        return [t.id for t in node.targets if isinstance(t, ast.Name)]
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return [node.target.id]
    return []


def _top_statements(body: Iterable[ast.stmt]) -> Iterable[ast.stmt]:
    """Module-level statements, looking into `if`/`try`/`with` blocks (compatibility shims)."""
    for node in body:
        if isinstance(node, ast.If):
            yield from _top_statements(node.body)
            yield from _top_statements(node.orelse)
        elif isinstance(node, ast.Try):
            yield from _top_statements(node.body)
            for handler in node.handlers:
                yield from _top_statements(handler.body)
            yield from _top_statements(node.orelse)
        elif isinstance(node, ast.With):
            yield from _top_statements(node.body)
        else:
            yield node


def signature(node: ast.AST) -> str:
    """A one-line outline of a definition: ``def f(a, b=1) -> int: ...``, ``class C(B):``."""
    if isinstance(node, _FUNC):
        stub = ast.FunctionDef(
            name=node.name,
            args=node.args,
            body=[ast.Expr(ast.Constant(...))],
            decorator_list=[],
            returns=node.returns,
            type_params=getattr(node, "type_params", []),
        )
        text = ast.unparse(ast.fix_missing_locations(stub)).replace("\n    ...", " ...")
        prefix = "async " if isinstance(node, ast.AsyncFunctionDef) else ""
        decorators = "".join(f"@{ast.unparse(d)} " for d in node.decorator_list)
        return f"{decorators}{prefix}{text}"
    if isinstance(node, ast.ClassDef):
        bases = [ast.unparse(b) for b in node.bases] + [ast.unparse(k) for k in node.keywords]
        decorators = "".join(f"@{ast.unparse(d)} " for d in node.decorator_list)
        return f"{decorators}class {node.name}" + (f"({', '.join(bases)})" if bases else "") + ":"
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return f"{node.target.id}: {ast.unparse(node.annotation)} = ..."
    names = _assigned_names(node)  # type: ignore[arg-type]
    return " = ".join(names) + " = ..." if names else ""


class Module:
    """One parsed Python file of the repository."""

    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.text = text
        self.lines = text.splitlines(keepends=True)
        try:
            self.tree: ast.Module | None = ast.parse(text)
        except (SyntaxError, ValueError):
            self.tree = None
        self.defs: dict[str, Definition] = {}
        self.top: list[Definition] = []  # module-level definitions in file order
        self.imports: dict[str, tuple[str, str | None]] = {}  # name -> (module, attribute)
        self.import_nodes: list[tuple[ast.stmt, set[str]]] = []  # statement, names it binds
        self.star: list[str] = []  # modules imported with *
        if self.tree is not None:
            self._index(self.tree)

    def _index(self, tree: ast.Module) -> None:
        for node in _top_statements(tree.body):
            if isinstance(node, ast.Import | ast.ImportFrom):
                self._add_import(node)
            elif isinstance(node, _DEF):
                kind = "class" if isinstance(node, ast.ClassDef) else "function"
                d = Definition(self.path, node.name, kind, *span(node), node)
                self.defs[node.name] = d
                self.top.append(d)
                if isinstance(node, ast.ClassDef):
                    for item in node.body:
                        if isinstance(item, _FUNC):
                            qual = f"{node.name}.{item.name}"
                            self.defs[qual] = Definition(
                                self.path, qual, "method", *span(item), item
                            )
            else:
                for name in _assigned_names(node):
                    d = Definition(self.path, name, "variable", *span(node), node)
                    self.defs.setdefault(name, d)
                    if d not in self.top:
                        self.top.append(d)

    def _package(self) -> str:
        return ".".join(PurePosixPath(self.path).parent.parts)

    def _add_import(self, node: ast.Import | ast.ImportFrom) -> None:
        bound: set[str] = set()
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    self.imports[alias.asname] = (alias.name, None)
                    bound.add(alias.asname)
                else:
                    top = alias.name.split(".")[0]
                    self.imports[top] = (top, None)
                    bound.add(top)
        else:
            base = node.module or ""
            if node.level:
                anchor = PurePosixPath(self.path).parent
                for _ in range(node.level - 1):
                    anchor = anchor.parent
                prefix = ".".join(p for p in anchor.parts if p not in ("", "."))
                base = ".".join(p for p in (prefix, base) if p)
            for alias in node.names:
                if alias.name == "*":
                    self.star.append(base)
                    continue
                name = alias.asname or alias.name
                self.imports[name] = (base, alias.name)
                bound.add(name)
        self.import_nodes.append((node, bound))

    def enclosing(self, line: int) -> Definition | None:
        """The innermost function or method (else class) whose span holds `line`."""
        best: Definition | None = None
        for d in self.defs.values():
            if d.kind == "variable" or not (d.start <= line <= d.end):
                continue
            if best is None or d.n_lines < best.n_lines:
                best = d
        return best

    def source(self, start: int, end: int) -> str:
        return "".join(self.lines[start - 1 : end])


class RepoIndex:
    """The Python files of a repository, parsed on demand."""

    def __init__(self, read: Callable[[str], str | None], listed: Iterable[str]) -> None:
        self._read = read
        self.listed = [p for p in listed if p.endswith(".py")]
        self._listed_set = set(self.listed)
        self._modules: dict[str, Module | None] = {}

    def module(self, path: str) -> Module | None:
        if path not in self._modules:
            text = self._read(path) if path in self._listed_set else None
            self._modules[path] = Module(path, text) if text is not None else None
        return self._modules[path]

    def module_path(self, dotted: str, near: str | None = None) -> str | None:
        """The repository file of a dotted module name (tried under the usual source roots and
        next to the importing file), or None for a module outside the repository."""
        if not dotted:
            return None
        rel = dotted.replace(".", "/")
        roots = list(_ROOTS)
        if near is not None:
            parent = str(PurePosixPath(near).parent)
            if parent != ".":
                roots.append(parent + "/")
        for root in roots:
            for candidate in (f"{root}{rel}.py", f"{root}{rel}/__init__.py"):
                if candidate in self._listed_set:
                    return candidate
        return None

    # ------------------------------------------------------------ name resolution
    def resolve(self, path: str, name: str, hops: int = 0) -> Definition | ModuleRef | None:
        """What `name` means at module level in `path`: a definition or a repository module."""
        mod = self.module(path)
        if mod is None or hops > _MAX_HOPS:
            return None
        if name in mod.defs and "." not in name:
            return mod.defs[name]
        if name in mod.imports:
            base, attr = mod.imports[name]
            if attr is None:
                target = self.module_path(base, near=path)
                return ModuleRef(target) if target else None
            sub = self.module_path(f"{base}.{attr}", near=path)
            if sub is not None:
                return ModuleRef(sub)
            target = self.module_path(base, near=path)
            if target is not None and target != path:
                return self.resolve(target, attr, hops + 1)
            return None
        for base in mod.star:
            target = self.module_path(base, near=path)
            if target is not None and target != path:
                found = self.resolve(target, name, hops + 1)
                if found is not None:
                    return found
        return None

    def attribute(
        self, owner: Definition | ModuleRef, attr: str, hops: int = 0
    ) -> Definition | ModuleRef | None:
        """`owner.attr`: a module's attribute, or a class's method (looked up in its bases)."""
        if isinstance(owner, ModuleRef):
            mod = self.module(owner.path)
            if mod is None:
                return None
            package = owner.path.removesuffix("/__init__.py").removesuffix(".py")
            sub = self.module_path(f"{package.replace('/', '.')}.{attr}")
            if owner.path.endswith("__init__.py") and sub is not None:
                return ModuleRef(sub)
            return self.resolve(owner.path, attr)
        if owner.kind != "class" or hops > _MAX_HOPS:
            return None
        mod = self.module(owner.path)
        if mod is None:
            return None
        found = mod.defs.get(f"{owner.name}.{attr}")
        if found is not None:
            return found
        for base in self.bases(owner):
            found_in_base = self.attribute(base, attr, hops + 1)
            if found_in_base is not None:
                return found_in_base
        return None

    def bases(self, cls: Definition) -> list[Definition]:
        """The repository classes a class derives from (by name, as far as they resolve)."""
        out: list[Definition] = []
        node = cls.node
        assert isinstance(node, ast.ClassDef)
        for base in node.bases:
            found = self._expr(cls.path, base, None)
            if isinstance(found, Definition) and found.kind == "class" and found != cls:
                out.append(found)
        return out

    def _expr(
        self,
        path: str,
        expr: ast.expr,
        cls: Definition | None,
        local: dict[str, Definition | ModuleRef] | None = None,
    ) -> Definition | ModuleRef | None:
        """What a name or a dotted attribute expression refers to, if it is in the repository."""
        if isinstance(expr, ast.Name):
            if expr.id in ("self", "cls") and cls is not None:
                return cls
            if local and expr.id in local:
                return local[expr.id]
            return self.resolve(path, expr.id)
        if isinstance(expr, ast.Attribute):
            if (
                isinstance(expr.value, ast.Call)
                and isinstance(expr.value.func, ast.Name)
                and expr.value.func.id == "super"
                and cls is not None
            ):
                for base in self.bases(cls):
                    found = self.attribute(base, expr.attr)
                    if found is not None:
                        return found
                return None
            owner = self._expr(path, expr.value, cls, local)
            return self.attribute(owner, expr.attr) if owner is not None else None
        return None

    def references(self, d: Definition) -> list[Definition]:
        """The repository definitions `d` refers to, in the order it first uses them.

        Names and dotted attributes it loads (functions, classes, methods through
        ``self``/``cls``/``super()``, module variables); for a class it uses, the methods it
        calls by attribute name on any object (``obj.parse(...)`` after ``obj = Parser()``) and
        its ``__init__`` when it is instantiated. A class refers to its bases.
        """
        mod = self.module(d.path)
        if mod is None:
            return []
        cls = mod.defs.get(d.owner) if d.owner else (d if d.kind == "class" else None)
        found: list[Definition] = []
        classes: list[Definition] = []
        attr_names: set[str] = set()
        called: set[tuple[str, str]] = set()
        local = _local_names(d.node)
        local_imports = self._local_imports(d)
        if d.kind == "class":  # a class refers to its bases and its class-level statements
            assert isinstance(d.node, ast.ClassDef)
            walked = [n for s in d.node.body if not isinstance(s, _DEF) for n in ast.walk(s)]
        else:  # not its decorators: they run when it is defined, not when it is called
            decorators = {
                id(n) for dec in getattr(d.node, "decorator_list", []) for n in ast.walk(dec)
            }
            walked = [n for n in ast.walk(d.node) if id(n) not in decorators]
        for node in walked:
            target: Definition | ModuleRef | None = None
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
                if node.id in local_imports:
                    target = local_imports[node.id]
                elif node.id in local or node.id in ("self", "cls"):
                    continue
                else:
                    target = self.resolve(d.path, node.id)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
                attr_names.add(node.attr)
                root = node.value
                while isinstance(root, ast.Attribute):
                    root = root.value
                if (
                    isinstance(root, ast.Name)
                    and root.id in local
                    and root.id not in ("self", "cls")
                    and root.id not in local_imports
                ):
                    continue
                target = self._expr(d.path, node, cls, local_imports)
            elif isinstance(node, ast.Call):
                callee = self._expr(d.path, node.func, cls, local_imports)
                if isinstance(callee, Definition) and callee.kind == "class":
                    called.add(callee.key)
                continue
            if isinstance(target, Definition) and target.key != d.key:
                found.append(target)
                if target.kind == "class":
                    classes.append(target)
        if d.kind == "class":
            found = [*self.bases(d), *found]
        for c in dict.fromkeys(classes):
            cmod = self.module(c.path)
            if cmod is None:
                continue
            if c.key in called:
                init = self.attribute(c, "__init__")
                if isinstance(init, Definition):
                    found.append(init)
            for attr in sorted(attr_names):
                method = cmod.defs.get(f"{c.name}.{attr}")
                if method is not None:
                    found.append(method)
        seen: set[tuple[str, str]] = set()
        out = []
        for f in found:
            if f.key not in seen and f.key != d.key and not _inside(f, d):
                seen.add(f.key)
                out.append(f)
        return out

    def _local_imports(self, d: Definition) -> dict[str, Definition | ModuleRef]:
        """What the imports inside a function bind (``from pkg.mod import f`` in a test)."""
        out: dict[str, Definition | ModuleRef] = {}
        mod = self.module(d.path)
        if mod is None or d.kind == "class":
            return out
        for node in ast.walk(d.node):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            scratch = Module.__new__(Module)
            scratch.path, scratch.imports, scratch.import_nodes, scratch.star = d.path, {}, [], []
            scratch._add_import(node)
            for name, (base, attr) in scratch.imports.items():
                target: Definition | ModuleRef | None = None
                if attr is None:
                    found = self.module_path(base, near=d.path)
                    target = ModuleRef(found) if found else None
                else:
                    sub = self.module_path(f"{base}.{attr}", near=d.path)
                    owner = self.module_path(base, near=d.path)
                    if sub is not None:
                        target = ModuleRef(sub)
                    elif owner is not None:
                        target = self.resolve(owner, attr, 1)
                if target is not None:
                    out[name] = target
        return out

    def find(self, path: str, qualname: str) -> Definition | None:
        mod = self.module(path)
        return mod.defs.get(qualname) if mod else None

    def defined_anywhere(self, name: str, paths: Iterable[str]) -> list[Definition]:
        """Top-level definitions (and methods) called `name` in the given files."""
        out = []
        for path in paths:
            mod = self.module(path)
            if mod is None:
                continue
            for d in mod.defs.values():
                if d.kind != "variable" and d.name.rsplit(".", 1)[-1] == name:
                    out.append(d)
        return out


def _inside(inner: Definition, outer: Definition) -> bool:
    return inner.path == outer.path and outer.start <= inner.start and inner.end <= outer.end


def _local_names(node: ast.AST) -> set[str]:
    """Names a function binds itself (parameters, assignments, loop and with targets, imports)."""
    names: set[str] = set()
    if isinstance(node, _FUNC):
        args = node.args
        for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]:
            names.add(a.arg)
        for a in (args.vararg, args.kwarg):
            if a is not None:
                names.add(a.arg)
    for child in ast.walk(node):
        if isinstance(child, ast.Name) and isinstance(child.ctx, ast.Store):
            names.add(child.id)
        elif isinstance(child, ast.arg) and child is not node:
            names.add(child.arg)
        elif isinstance(child, ast.Import | ast.ImportFrom):
            names.update((a.asname or a.name).split(".")[0] for a in child.names)
        elif isinstance(child, _DEF) and child is not node:
            names.add(child.name)
    return names
