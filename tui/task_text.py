"""Turn what the user typed into a Task: `assert` lines become the task's tests."""

from __future__ import annotations

from agent.events import Task, TaskKind


def task_from_prompt(text: str) -> Task:
    """Split typed text into the task description and its assert lines.

    >>> task_from_prompt("Add two numbers.\\nassert add(1, 2) == 3").tests
    ['assert add(1, 2) == 3']
    """
    description: list[str] = []
    tests: list[str] = []
    for line in text.strip().splitlines():
        if line.strip().startswith("assert "):
            tests.append(line.strip())
        else:
            description.append(line)
    body = "\n".join(description).strip() or text.strip()
    return Task(text=body, kind=TaskKind.FUNCTION, tests=tests, suite="chat")
