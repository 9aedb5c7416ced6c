"""One execution of an attempt: a status badge, each test with expected/actual, stdout/stderr."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.text import Text
from textual.widgets import Collapsible, Static

from agent.sandbox.result import CapturedText, ExecResult, ExecStatus, TestResult, TestStatus

STATUS_STYLE: dict[str, tuple[str, str]] = {
    ExecStatus.PASSED: ("✓ passed", "bold green"),
    ExecStatus.FAILED: ("✗ failed", "bold red"),
    ExecStatus.ERROR: ("✗ error", "bold red"),
    ExecStatus.TIMEOUT: ("⏱ timeout", "bold yellow"),
    ExecStatus.MEMORY: ("✗ out of memory", "bold red"),
    ExecStatus.KILLED: ("✗ killed", "bold red"),
}

TEST_ICON: dict[str, tuple[str, str]] = {
    TestStatus.PASSED: ("✓", "green"),
    TestStatus.FAILED: ("✗", "red"),
    TestStatus.ERROR: ("!", "red"),
    TestStatus.TIMEOUT: ("⏱", "yellow"),
    TestStatus.SKIPPED: ("-", "dim"),
}

MAX_STREAM_LINES = 30


MAX_INLINE_LINES = 10  # a passing program's output up to this long is shown, not folded
MAX_INLINE_CHARS = 800


def summary(result: ExecResult) -> str:
    """'✓ passed · 3/3 tests · 0.12s' (the collapsible's title); a run without tests that
    exited cleanly is '✓ ran cleanly · 0.05s'."""
    if result.passed and not result.tests:
        return f"✓ ran cleanly · {result.duration_s:.2f}s"
    badge, _ = STATUS_STYLE.get(result.status, (str(result.status), ""))
    bits = [badge]
    if result.n_tests:
        bits.append(f"{result.n_passed}/{result.n_tests} tests")
    bits.append(f"{result.duration_s:.2f}s")
    return " · ".join(bits)


def render_test(test: TestResult) -> Text:
    icon, style = TEST_ICON.get(test.status, ("?", ""))
    text = Text()
    text.append(f"{icon} ", style=f"bold {style}")
    text.append(test.name, style="" if test.status == TestStatus.PASSED else "bold")
    if test.status != TestStatus.PASSED:
        shown_values = test.expected is not None or test.actual is not None
        if shown_values:
            text.append("\n    expected ", style="dim")
            text.append(test.expected if test.expected is not None else "?", style="green")
            text.append("\n    actual   ", style="dim")
            text.append(test.actual if test.actual is not None else "?", style="red")
        if test.message and not (shown_values and test.exception_type is None):
            text.append("\n    ")
            text.append(test.message, style="italic")
        if test.lineno is not None:
            text.append(f"  (line {test.lineno})", style="dim")
    return text


def render_stream(label: str, captured: CapturedText) -> Text | None:
    if not captured.text.strip():
        return None
    lines = captured.text.rstrip("\n").splitlines()
    shown = lines[-MAX_STREAM_LINES:]
    text = Text()
    text.append(f"{label}\n", style="bold dim")
    if len(lines) > len(shown):
        text.append(f"… {len(lines) - len(shown)} earlier lines\n", style="dim")
    text.append("\n".join(shown))
    if captured.truncated_bytes:
        text.append(f"\n… {captured.truncated_bytes} bytes cut from the middle", style="dim")
    return text


def render_result(result: ExecResult) -> RenderableType:
    parts: list[RenderableType] = [render_test(t) for t in result.tests]
    if not result.tests and result.status != ExecStatus.PASSED:
        exit_text = f"exit code {result.exit_code}" if result.exit_code is not None else ""
        if result.signal:
            exit_text += f" signal {result.signal}"
        parts.append(Text(exit_text.strip() or "no tests ran", style="italic"))
    for label, captured in (("stdout", result.stdout), ("stderr", result.stderr)):
        rendered = render_stream(label, captured)
        if rendered is not None:
            parts.append(rendered)
    iso = result.isolation
    parts.append(
        Text(
            f"isolation: {iso.level}, network {'off' if iso.network else 'on'}, "
            f"filesystem {iso.filesystem}",
            style="dim",
        )
    )
    return Group(*parts)


class ExecResultView(Collapsible):
    """A collapsible execution result; failures start expanded, passes collapsed."""

    DEFAULT_CSS = """
    ExecResultView {
        margin: 0 0 0 2;
        padding: 0;
        border-top: none;
        background: $surface;
    }
    ExecResultView.-passed CollapsibleTitle { color: $success; }
    ExecResultView.-failed CollapsibleTitle { color: $error; }
    ExecResultView > Contents { padding: 0 0 0 2; }
    """

    def __init__(self, result: ExecResult, *, label: str = "", collapsed: bool | None = None):
        self.result = result
        title = summary(result)
        if label:
            title = f"{label}: {title}"
        if collapsed is None:
            collapsed = result.passed
        super().__init__(
            Static(render_result(result), classes="exec-body"),
            title=title,
            collapsed=collapsed,
            classes="-passed" if result.passed else "-failed",
        )


def inline_output(result: ExecResult) -> str | None:
    """A passing run's stdout when it is short enough to show as it is, else None."""
    text = result.stdout.text.rstrip("\n")
    if not result.passed or not text.strip() or result.stdout.truncated_bytes:
        return None
    if len(text) > MAX_INLINE_CHARS or len(text.splitlines()) > MAX_INLINE_LINES:
        return None
    return text


class ProgramOutput(Static):
    """A passing program's short output, shown below its result instead of folded in it."""

    DEFAULT_CSS = """
    ProgramOutput {
        margin: 0 0 0 4;
        padding: 0 1;
        border-left: outer $success;
        color: $text;
    }
    """

    def __init__(self, text: str) -> None:
        body = Text("output\n", style="bold dim")
        body.append(text)
        super().__init__(body, classes="program-output")
