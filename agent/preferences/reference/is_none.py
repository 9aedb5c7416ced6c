"""Reference verifier: compare with None by `is` / `is not`, never `==` / `!=`."""

import ast


def _none(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and node.value is None


def evaluate(code: str) -> bool:
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return False
    for node in ast.walk(tree):
        if not isinstance(node, ast.Compare):
            continue
        operands = [node.left, *node.comparators]
        for index, op in enumerate(node.ops):
            if isinstance(op, ast.Eq | ast.NotEq) and (
                _none(operands[index]) or _none(operands[index + 1])
            ):
                return False
    return True
