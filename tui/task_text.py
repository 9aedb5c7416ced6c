"""Turn what the user typed into a Task.

- `assert ...` lines become the task's tests (a function task);
- a `$ command` line makes it a workspace task on the current directory, checked
  by that command (e.g. `$ pytest -x -q tests/test_dates.py`); accepting commits
  the change when the directory is a git repository.
"""

from __future__ import annotations

from pathlib import Path

from agent.events import Task, TaskKind


def task_from_prompt(text: str, cwd: Path | None = None) -> Task:
    """Split typed text into the task description, its assert lines and a test command.

    >>> task_from_prompt("Add two numbers.\\nassert add(1, 2) == 3").tests
    ['assert add(1, 2) == 3']
    >>> task_from_prompt("Fix the bug.\\n$ pytest -q", Path("/repo")).test_cmd
    'pytest -q'
    """
    description: list[str] = []
    tests: list[str] = []
    test_cmd: str | None = None
    for line in text.strip().splitlines():
        stripped = line.strip()
        if stripped.startswith("assert "):
            tests.append(stripped)
        elif stripped.startswith("$ ") and stripped[2:].strip():
            test_cmd = stripped[2:].strip()
        else:
            description.append(line)
    body = "\n".join(description).strip() or text.strip()
    if test_cmd is not None:
        workdir = (cwd or Path.cwd()).resolve()
        return Task(
            text=body,
            kind=TaskKind.WORKSPACE,
            workdir=str(workdir),
            test_cmd=test_cmd,
            suite="chat",
        )
    return Task(text=body, kind=TaskKind.FUNCTION, tests=tests, suite="chat")
