"""Reference verifier: no os.path (pathlib instead)."""

import ast


def evaluate(code: str) -> bool:
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return False
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and node.attr == "path"
            and isinstance(node.value, ast.Name)
            and node.value.id == "os"
        ):
            return False
        if isinstance(node, ast.Import) and any(
            a.name == "os.path" or a.name.startswith("os.path.") for a in node.names
        ):
            return False
        if isinstance(node, ast.ImportFrom):
            if node.module == "os.path" or (node.module or "").startswith("os.path."):
                return False
            if node.module == "os" and any(a.name == "path" for a in node.names):
                return False
    return True
