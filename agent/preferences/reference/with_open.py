"""Reference verifier: files are opened in a `with` statement."""

import ast


def _opens(node: ast.AST) -> bool:
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    return (isinstance(func, ast.Name) and func.id == "open") or (
        isinstance(func, ast.Attribute) and func.attr == "open"
    )


def evaluate(code: str) -> bool:
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return False
    managed = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.With | ast.AsyncWith):
            managed.update(id(item.context_expr) for item in node.items)
    return all(id(node) in managed for node in ast.walk(tree) if _opens(node))
