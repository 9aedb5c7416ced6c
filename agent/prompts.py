"""Every text fixloop sends to the model, and the layout of the conversation.

A repair episode (RLEF's shape) is one conversation:

    system   SYSTEM
    user     task_prompt(task)            the task and its public tests
    assistant                             attempt 1
    user     repair_prompt(feedback)      what went wrong: expected vs actual, the error
    assistant                             attempt 2
    ...

A user's correction (ILF) starts a short conversation of its own: the task,
the attempt it is about, and the correction (`correction_prompt`).

When an attempt repeats an earlier failed one, the conversation restarts as
system + task + `duplicate_prompt` (what failed, without the program). The restart and
mixed policies (`agent/policies.py`) restart the same way after a failed attempt, as
system + task + `restart_prompt` (a short note of what failed).
"""

from __future__ import annotations

from agent.events import ChatMessage, Task

# Measured on MBPP validation 511-551 with the 1.5B model, greedy, first attempt: this plain
# prompt 23/41; a longer one that also said "then stop" and "do not write tests" 18/41; one
# asking to think first 21/41 (docs/BENCHMARKS.md). Small models do best with few rules.
SYSTEM = "You are a Python programmer. Reply with the complete program in one ```python block."

PROGRAM_REPLY = "Reply with the complete program in one ```python block."


NO_CODE_MESSAGE = (
    "Your reply has no code block. Reply with the complete program in one ```python block."
)


def task_prompt(task: Task) -> str:
    """The first user turn: the task, the function name to use, the public tests."""
    parts = [task.text.strip()]
    if task.entry_point:
        parts.append(f"Name the function `{task.entry_point}`.")
    if task.tests:
        tests = "\n".join(task.tests)
        parts.append(f"Your code should pass these tests:\n```python\n{tests}\n```")
    elif task.expected_stdout is not None:
        parts.append(f"The program must print exactly:\n```\n{task.expected_stdout}\n```")
    elif task.test_file:
        parts.append(f"Your code should pass this pytest file:\n```python\n{task.test_file}\n```")
    return "\n\n".join(parts)


def first_messages(system: str, task_text: str) -> list[ChatMessage]:
    return [ChatMessage(role="system", content=system), ChatMessage(role="user", content=task_text)]


def format_error_prompt(message: str) -> str:
    return message


def repair_prompt(feedback: str, reply: str = PROGRAM_REPLY) -> str:
    """The user turn after a failed run: the rendered execution feedback.

    `reply` says what form the answer takes; environments with another format
    (the git workspace's file edits) pass their own.
    """
    return f"{feedback.rstrip()}\n\nFind the mistake and fix it. {reply}"


def duplicate_prompt(duplicate_of: int, feedback: str, reply: str = PROGRAM_REPLY) -> str:
    """Appended to the task when an attempt repeated attempt `duplicate_of`, which failed.

    The conversation restarts from the task with this note: the failed program
    itself is not shown again, because a small model copies what it can see.
    """
    return (
        f"An earlier attempt (attempt {duplicate_of}) failed, and retrying gave the same "
        f"program again. What went wrong:\n\n{feedback.rstrip()}\n\n"
        "Rethink the problem and solve it with a different approach: do not write that "
        f"program again. {reply}"
    )


def restart_prompt(note: str, reply: str = PROGRAM_REPLY) -> str:
    """Appended to the task when a policy starts over from it after a failed attempt.

    `note` is one or two lines on what failed (`agent.policies.failure_note`); the failed
    program is not shown, so the next attempt is a fresh sample, not an edit of it.
    """
    return f"A previous attempt failed: {note.strip()}\n\nSolve the task from scratch. {reply}"


def unchanged_prompt(correction: str) -> str:
    """Appended to a correction the model answered with the same program."""
    return (
        "Your last reply returned the program unchanged. It must change so that it follows "
        f"this feedback: {correction.strip()}"
    )


def correction_prompt(correction: str, reply: str = PROGRAM_REPLY) -> str:
    """The user turn carrying a natural-language correction of the previous attempt (ILF)."""
    return (
        f"Feedback on your program: {correction.strip()}\n\n"
        f"Rewrite the code so that it follows this feedback and still solves the task. {reply}"
    )


def code_reply(code: str) -> str:
    """An assistant turn holding just `code`, for conversations rebuilt from an attempt."""
    return f"```python\n{code.rstrip()}\n```"
