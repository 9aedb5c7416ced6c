"""Reference verifier: no bare `except:` clauses."""

import ast


def evaluate(code: str) -> bool:
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return False
    return not any(isinstance(n, ast.ExceptHandler) and n.type is None for n in ast.walk(tree))
