"""Reference verifier: no line longer than 79 characters."""

LIMIT = 79


def evaluate(code: str) -> bool:
    return all(len(line) <= LIMIT for line in code.splitlines())
