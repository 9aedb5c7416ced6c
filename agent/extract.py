"""Code out of model replies, and a normal form of code for spotting repeated attempts."""

from __future__ import annotations

import ast
import io
import re
import tokenize

# An opening fence (``` or ~~~, optional language tag) at the start of a line.
_FENCE_OPEN = re.compile(r"^[ \t]*(?P<fence>`{3,}|~{3,})[ \t]*(?P<lang>[\w+#.-]*)[^\n]*\n", re.M)
_PY_TAGS = {"python", "py", "python3", "py3", ""}
_DEFINES = re.compile(r"^\s*(def|class|async\s+def|import|from)\s", re.M)


def _blocks(text: str) -> list[tuple[str, str, bool]]:
    """Every fenced block as (language tag, body, closed), in order."""
    blocks: list[tuple[str, str, bool]] = []
    pos = 0
    while True:
        m = _FENCE_OPEN.search(text, pos)
        if m is None:
            return blocks
        fence = m.group("fence")
        close = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$", re.M)
        end = close.search(text, m.end())
        body = text[m.end() : end.start() if end else len(text)]
        body = body.rstrip("\n") + "\n" if body.strip() else ""
        blocks.append((m.group("lang").lower(), body, end is not None))
        if end is None:
            return blocks
        pos = end.end()


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """Every fenced block as (language tag, body), in order.

    A final block whose closing fence never came (the reply was cut off by the
    token limit) is returned up to the end of the text.
    """
    return [(lang, body) for lang, body, _ in _blocks(text)]


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    return True


def extract_code(reply: str, entry_point: str | None = None) -> str | None:
    """The program in a model reply, or None when it has none.

    Python (or untagged) fenced blocks are used. With one block, that block.
    With several, the blocks that define something (def/class/import) joined in
    order, so a trailing "example usage" block is left out; when `entry_point`
    is given and only some blocks define it, those win. A reply without fences
    that is itself a Python program with a definition is accepted as is.
    """
    blocks = [body for lang, body in fenced_blocks(reply) if lang in _PY_TAGS and body.strip()]
    if not blocks:
        bare = reply.strip()
        if bare and _DEFINES.search(bare) and _parses(bare):
            return bare + "\n"
        return None
    if len(blocks) == 1:
        return blocks[0]
    if entry_point:
        pattern = re.compile(rf"^\s*(async\s+)?(def|class)\s+{re.escape(entry_point)}\b", re.M)
        defining = [b for b in blocks if pattern.search(b)]
        if defining:
            return defining[-1]
    defining = [b for b in blocks if _DEFINES.search(b)]
    if not defining:
        return blocks[0]
    return "\n".join(b.rstrip("\n") + "\n" for b in defining)


def complete_code_block(text: str) -> bool:
    """True when `text` has a closed Python block that parses and defines something."""
    if "```" not in text and "~~~" not in text:
        return False
    return any(
        closed and lang in _PY_TAGS and _DEFINES.search(body) is not None and _parses(body)
        for lang, body, closed in _blocks(text)
    )


class _StripDocstrings(ast.NodeTransformer):
    def _strip(self, node: ast.AST) -> ast.AST:
        self.generic_visit(node)
        body = getattr(node, "body", None)
        if (
            isinstance(body, list)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]  # type: ignore[attr-defined]
        return node

    visit_Module = visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _strip


def normalize_code(code: str) -> str:
    """A normal form under which two attempts that differ only cosmetically are equal.

    Python that parses is reduced to its AST dump without docstrings (so
    comments, blank lines, formatting and docstrings do not count); anything
    else loses its comments and all whitespace runs collapse to one space.
    """
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return _strip_text(code)
    return ast.dump(_StripDocstrings().visit(tree), annotate_fields=False)


def _strip_text(code: str) -> str:
    try:
        tokens = tokenize.generate_tokens(io.StringIO(code).readline)
        kept = [
            t.string
            for t in tokens
            if t.type not in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE)
            and t.type not in (tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER)
        ]
        return " ".join(kept)
    except (tokenize.TokenError, SyntaxError, IndentationError):
        lines = [re.sub(r"\s+#.*$|^\s*#.*$", "", line) for line in code.splitlines()]
        return " ".join(" ".join(lines).split())
