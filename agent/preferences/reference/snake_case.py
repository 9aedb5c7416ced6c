"""Reference verifier: snake_case function, parameter and variable names."""

import ast
import re

SNAKE = re.compile(r"^_{0,2}[a-z][a-z0-9_]*$")
CONSTANT = re.compile(r"^_?[A-Z][A-Z0-9_]*$")


def _names(node: ast.AST) -> list[tuple[str, str]]:
    """(kind, name) pairs the rule is about, defined by this node."""
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        dunder = node.name.startswith("__") and node.name.endswith("__")
        return [] if dunder else [("function", node.name)]
    if isinstance(node, ast.arg):
        return [("parameter", node.arg)]
    if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store) and node.id != "_":
        return [("variable", node.id)]
    return []


def evaluate(code: str) -> bool:
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return False
    for node in ast.walk(tree):
        for kind, name in _names(node):
            if SNAKE.match(name):
                continue
            if kind == "variable" and CONSTANT.match(name):
                continue
            return False
    return True
