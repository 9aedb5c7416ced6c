"""Reference verifier: every function has annotated parameters and a return annotation."""

import ast


def evaluate(code: str) -> bool:
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return False
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        if node.returns is None:
            return False
        args = node.args
        positional = args.posonlyargs + args.args
        for index, arg in enumerate([*positional, *args.kwonlyargs]):
            if index == 0 and arg.arg in ("self", "cls"):
                continue
            if arg.annotation is None:
                return False
        for arg in (args.vararg, args.kwarg):
            if arg is not None and arg.annotation is None:
                return False
    return True
