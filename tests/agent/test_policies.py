"""The repair policies (agent/policies.py), pinned turn by turn with a scripted model and the
real sandbox: what each turn's prompt holds and how it is sampled."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent import prompts
from agent.backends.scripted import ScriptedBackend
from agent.config import POLICY_NAMES, Settings
from agent.environment import FunctionEnv
from agent.events import (
    ChatMessage,
    EpisodeFinished,
    Event,
    ExecFinished,
    FormatError,
    ModelReplied,
    RepairRequested,
    SessionStarted,
    Task,
)
from agent.loop import Cycle, LoopContext, LoopState
from agent.policies import (
    POLICIES,
    SAMPLED_TEMPERATURE,
    PolicyCycle,
    failure_note,
    make_cycle,
    raised_at_a_line,
)
from agent.sandbox.result import ExecResult, ExecStatus, TestResult, TestStatus
from agent.session import AgentSession
from agent.session_log import read_session
from fixloop.cli import app
from tests.agent.openai_server import CannedOpenAI, serve

TESTS = ["assert add(1, 2) == 3", "assert add(-1, 1) == 0", "assert add(2, 2) == 4"]
TASK = Task(text="Write a function add(a, b) that returns the sum of a and b.", tests=TESTS)


def block(code: str) -> str:
    return f"```python\n{code}\n```"


SUB = block("def add(a, b):\n    return a - b")  # 0 of 3, assertions only
SUB2 = block("def add(a, b):\n    return b - a")  # 0 of 3, assertions only
MUL = block("def add(a, b):\n    return a * b")  # 1 of 3: add(2, 2) == 4
MUL_BA = block("def add(a, b):\n    return b * a")  # 1 of 3 again, another program
TWO = block("def add(a, b):\n    return a + b if a < 2 else 0")  # 2 of 3
CRASH = block("def add(a, b):\n    return a + c")  # 0 of 3, NameError at line 2
RIGHT = block("def add(a, b):\n    return a + b")

SYSTEM = ChatMessage(role="system", content=prompts.SYSTEM)
TASK_TEXT = prompts.task_prompt(TASK)


def settings_for(tmp_path: Path, policy: str, **kw: object) -> Settings:
    values: dict[str, object] = {"max_turns": 4, "exec_timeout": 10, **kw}
    return Settings(sessions_dir=tmp_path / "sessions", policy=policy, **values)


def run(
    tmp_path: Path, policy: str, replies: list[str], **kw: object
) -> tuple[list[Event], ScriptedBackend, AgentSession]:
    backend = ScriptedBackend(replies, prefix_cache=bool(kw.pop("prefix_cache", False)))
    session = AgentSession(TASK, backend, settings_for(tmp_path, policy, **kw), purpose="solve")
    events = [e for e in session.start() if e.type != "token_delta"]
    session.close()
    return events, backend, session


def user(text: str) -> ChatMessage:
    return ChatMessage(role="user", content=text)


def assistant(text: str) -> ChatMessage:
    return ChatMessage(role="assistant", content=text)


def feedback(events: list[Event], turn: int) -> str:
    """The rendered execution feedback of a turn, as logged."""
    run_ = next(e for e in events if isinstance(e, ExecFinished) and e.turn == turn)
    assert run_.feedback
    return run_.feedback


def repair(events: list[Event], turn: int) -> ChatMessage:
    return user(prompts.repair_prompt(feedback(events, turn)))


def restart(events: list[Event], turn: int) -> ChatMessage:
    result = next(e for e in events if isinstance(e, ExecFinished) and e.turn == turn).result
    return user(f"{TASK_TEXT}\n\n{prompts.restart_prompt(failure_note(result))}")


def sampling(backend: ScriptedBackend) -> list[tuple[float, int | None]]:
    return [(c.params.temperature, c.params.seed) for c in backend.calls]


def reasons(events: list[Event]) -> list[str]:
    return [e.reason for e in events if isinstance(e, RepairRequested)]


def outcome(events: list[Event]) -> tuple[str, int | None, int]:
    end = events[-1]
    assert isinstance(end, EpisodeFinished)
    return end.outcome, end.best_turn, end.turns


SCENARIO = [SUB, SUB2, MUL, RIGHT]  # 0/3, 0/3 (no better), 1/3 (better), pass


def test_greedy_is_todays_cycle_repairing_in_one_conversation(tmp_path: Path) -> None:
    events, backend, _ = run(tmp_path, "greedy", SCENARIO)
    first = [SYSTEM, user(TASK_TEXT)]
    assert [c.messages for c in backend.calls] == [
        first,
        [*first, assistant(SUB), repair(events, 1)],
        [*first, assistant(SUB), repair(events, 1), assistant(SUB2), repair(events, 2)],
        [
            *first,
            assistant(SUB),
            repair(events, 1),
            assistant(SUB2),
            repair(events, 2),
            assistant(MUL),
            repair(events, 3),
        ],
    ]
    assert sampling(backend) == [(0.0, 0)] * 4
    assert reasons(events) == ["exec", "exec", "exec"]
    assert outcome(events) == ("passed", 4, 4)


def test_sampled_repairs_in_one_conversation_at_t08_with_a_seed_per_turn(tmp_path: Path) -> None:
    events, backend, _ = run(tmp_path, "sampled", SCENARIO, seed=100)
    _, greedy, _ = run(tmp_path / "g", "greedy", SCENARIO, seed=100)
    assert [c.messages for c in backend.calls] == [c.messages for c in greedy.calls]
    hot = SAMPLED_TEMPERATURE
    assert sampling(backend) == [(0.0, 100), (hot, 102), (hot, 103), (hot, 104)]
    assert reasons(events) == ["exec", "exec", "exec"]
    assert outcome(events) == ("passed", 4, 4)


def test_restart_starts_over_from_the_task_when_an_attempt_is_no_better(tmp_path: Path) -> None:
    events, backend, _ = run(tmp_path, "restart", SCENARIO)
    first = [SYSTEM, user(TASK_TEXT)]
    fresh = [SYSTEM, restart(events, 2)]  # turn 2 passed no more tests than turn 1
    assert [c.messages for c in backend.calls] == [
        first,
        [*first, assistant(SUB), repair(events, 1)],  # the first attempt is the best so far
        fresh,  # no program in it: a fresh sample with a note of what failed
        [*fresh, assistant(MUL), repair(events, 3)],  # turn 3 improved (1 of 3): repair it
    ]
    assert sampling(backend) == [(0.0, 0), (0.0, 0), (SAMPLED_TEMPERATURE, 3), (0.0, 0)]
    assert reasons(events) == ["exec", "restart", "exec"]
    note = backend.calls[2].messages[1].content
    assert "A previous attempt failed: 3 of 3 tests failed; `assert add(1, 2) == 3` gave 1" in note
    assert "def add" not in note  # the failed program is not shown again
    assert outcome(events) == ("passed", 4, 4)


@pytest.mark.parametrize("policy", ["restart", "mixed", "adaptive"])
def test_an_unusable_reply_restarts_from_the_task_under_restart_mixed_adaptive(
    tmp_path: Path, policy: str
) -> None:
    """Told in the same conversation that its edits changed nothing, the 1.5B model copied the
    prompt back for 7 turns (the real-bug benchmark); restart and mixed start over instead."""
    events, backend, _ = run(tmp_path, policy, ["I cannot help with that.", RIGHT])
    message = next(e.message for e in events if isinstance(e, FormatError))
    note = prompts.restart_prompt("its answer could not be used: " + message)
    assert [c.messages for c in backend.calls] == [
        [SYSTEM, user(TASK_TEXT)],
        [SYSTEM, user(f"{TASK_TEXT}\n\n{note}")],
    ]
    assert sampling(backend)[1] == (SAMPLED_TEMPERATURE, 2)
    assert reasons(events) == ["restart"]
    assert outcome(events) == ("passed", 2, 2)
    # greedy and sampled keep the refusal in the conversation
    _, kept, _ = run(tmp_path / "g", "greedy", ["I cannot help with that.", RIGHT])
    assert kept.calls[1].messages[-2] == assistant("I cannot help with that.")


def test_mixed_restarts_when_nothing_passed_and_repairs_when_something_did(
    tmp_path: Path,
) -> None:
    events, backend, _ = run(tmp_path, "mixed", SCENARIO)
    after_2 = [SYSTEM, restart(events, 2)]
    assert [c.messages for c in backend.calls] == [
        [SYSTEM, user(TASK_TEXT)],
        [SYSTEM, restart(events, 1)],  # 0 of 3, assertions only: start over
        after_2,  # 0 of 3 again: start over, with the newer note
        [*after_2, assistant(MUL), repair(events, 3)],  # 1 of 3: repair
    ]
    hot = SAMPLED_TEMPERATURE
    assert sampling(backend) == [(0.0, 0), (hot, 2), (hot, 3), (0.0, 0)]
    assert reasons(events) == ["restart", "restart", "exec"]
    assert outcome(events) == ("passed", 4, 4)


def test_mixed_repairs_an_exception_at_a_line_of_the_program(tmp_path: Path) -> None:
    events, backend, _ = run(tmp_path, "mixed", [CRASH, RIGHT])
    first = [SYSTEM, user(TASK_TEXT)]
    assert [c.messages for c in backend.calls] == [
        first,
        [*first, assistant(CRASH), repair(events, 1)],
    ]
    assert sampling(backend) == [(0.0, 0), (0.0, 0)]
    assert reasons(events) == ["exec"]


def test_adaptive_starts_over_when_a_repair_did_not_improve(tmp_path: Path) -> None:
    events, backend, _ = run(tmp_path, "adaptive", [MUL, MUL_BA, RIGHT])
    first = [SYSTEM, user(TASK_TEXT)]
    assert [c.messages for c in backend.calls] == [
        first,
        [*first, assistant(MUL), repair(events, 1)],  # 1 of 3: repair, as mixed does
        [SYSTEM, restart(events, 2)],  # the repair passed no more: start over
    ]
    assert sampling(backend) == [(0.0, 0), (0.0, 0), (SAMPLED_TEMPERATURE, 3)]
    assert reasons(events) == ["exec", "restart"]
    assert outcome(events) == ("passed", 3, 3)
    # mixed keeps repairing the same approach
    mixed_events, mixed, _ = run(tmp_path / "m", "mixed", [MUL, MUL_BA, RIGHT])
    assert reasons(mixed_events) == ["exec", "exec"]
    assert mixed.calls[2].messages[-2] == assistant(MUL_BA)


def test_adaptive_keeps_repairing_while_repairs_improve(tmp_path: Path) -> None:
    events, backend, _ = run(tmp_path, "adaptive", [MUL, TWO, RIGHT])
    first = [SYSTEM, user(TASK_TEXT)]
    assert backend.calls[2].messages == [
        *first,
        assistant(MUL),
        repair(events, 1),
        assistant(TWO),
        repair(events, 2),
    ]
    assert reasons(events) == ["exec", "exec"]
    # nothing passed at first: it starts over, as mixed does; the restart's answer is not
    # a repair, so its failure is judged as a first attempt (1 of 3: repair it)
    events, backend, _ = run(tmp_path / "r", "adaptive", [SUB, MUL, RIGHT])
    assert reasons(events) == ["restart", "exec"]
    assert outcome(events) == ("passed", 3, 3)
    # a duplicate's retry starts from the task too: its crash at a line is repaired
    events, backend, _ = run(tmp_path / "d", "adaptive", [MUL, MUL, CRASH, RIGHT])
    assert reasons(events) == ["exec", "duplicate", "exec"]
    assert [len(c.messages) for c in backend.calls] == [2, 4, 2, 4]


def test_fresh_restarts_from_the_task_alone_and_pays_for_one_token(tmp_path: Path) -> None:
    backend = ScriptedBackend([MUL, MUL_BA, SUB, RIGHT], prefix_cache=True)
    settings = settings_for(tmp_path, "fresh")
    with AgentSession(TASK, backend, settings, purpose="solve") as session:
        events = [e for e in session.start() if e.type != "token_delta"]
    first = [SYSTEM, user(TASK_TEXT)]
    assert [c.messages for c in backend.calls] == [
        first,
        [*first, assistant(MUL), repair(events, 1)],  # 1 of 3: repair, as adaptive does
        first,  # the repair passed no more: the task again, byte for byte, no note
        first,  # a fresh sample that passed nothing starts over too
    ]
    hot = SAMPLED_TEMPERATURE
    assert sampling(backend) == [(0.0, 0), (0.0, 0), (hot, 3), (hot, 4)]
    assert reasons(events) == ["exec", "restart", "restart"]
    restarts = [e for e in events if isinstance(e, RepairRequested) and e.reason == "restart"]
    assert all(e.feedback == "" for e in restarts)
    # the task is already in the cache: a restart evaluates one token of its prompt
    replies = [e for e in events if isinstance(e, ModelReplied)]
    assert [r.prompt_tokens_evaluated for r in replies[2:]] == [1, 1]
    assert outcome(events) == ("passed", 4, 4)
    # adaptive, on the same replies, restarts with a note
    noted, with_note, _ = run(tmp_path / "a", "adaptive", [MUL, MUL_BA, SUB, RIGHT])
    assert with_note.calls[2].messages == [SYSTEM, restart(noted, 2)]


def test_resample_never_repairs_every_attempt_is_a_new_sample_of_the_task(
    tmp_path: Path,
) -> None:
    # 1 of 3, 2 of 3 (an improvement), a crash at a line: every other policy but greedy and
    # sampled would repair one of these; resample starts over after each
    events, backend, _ = run(tmp_path, "resample", [MUL, TWO, CRASH, RIGHT])
    first = [SYSTEM, user(TASK_TEXT)]
    assert [c.messages for c in backend.calls] == [first] * 4
    hot = SAMPLED_TEMPERATURE
    assert sampling(backend) == [(0.0, 0), (hot, 2), (hot, 3), (hot, 4)]
    assert reasons(events) == ["restart"] * 3
    assert outcome(events) == ("passed", 4, 4)
    # a repeated program is resampled for free, as under every policy; here from the task
    # alone too (no note: the prompt is the cached first one), hotter than a restart
    events, backend, _ = run(tmp_path / "d", "resample", [MUL, MUL, RIGHT], prefix_cache=True)
    assert reasons(events) == ["restart", "duplicate"]
    assert outcome(events) == ("passed", 3, 3)  # 3 generations, 2 of them attempts
    assert [c.messages for c in backend.calls] == [first] * 3
    dup = next(e for e in events if isinstance(e, RepairRequested) and e.reason == "duplicate")
    assert dup.feedback == ""
    temperature, seed = sampling(backend)[2]
    assert temperature >= hot and seed not in (0, 2)  # a new draw, not the restart's again
    replies = [e for e in events if isinstance(e, ModelReplied)]
    assert [r.prompt_tokens_evaluated for r in replies[1:]] == [1, 1]
    # adaptive, which restarts with a note, retries a duplicate with the failure noted
    _, noted, _ = run(tmp_path / "n", "adaptive", [SUB, SUB, RIGHT])
    retry = noted.calls[2].messages[1].content
    assert retry.startswith(TASK_TEXT) and len(retry) > len(TASK_TEXT) + 20


CRASH2 = block("def add(a, b):\n    return a + d")  # 0 of 3, NameError at line 2 again


def test_targeted_repairs_only_a_crash_at_a_line_and_samples_the_task_otherwise(
    tmp_path: Path,
) -> None:
    # 1 of 3 by a wrong answer: a new sample of the task (mixed would repair it); then a crash
    # at a line: repaired in the conversation, greedily
    events, backend, _ = run(tmp_path, "targeted", [MUL, CRASH, RIGHT], prefix_cache=True)
    first = [SYSTEM, user(TASK_TEXT)]
    assert [c.messages for c in backend.calls] == [
        first,
        first,
        [*first, assistant(CRASH), repair(events, 2)],
    ]
    assert sampling(backend) == [(0.0, 0), (SAMPLED_TEMPERATURE, 2), (0.0, 0)]
    assert reasons(events) == ["restart", "exec"]
    restart_ = next(e for e in events if isinstance(e, RepairRequested))
    assert restart_.feedback == ""  # no note: the cached prompt, as resample's
    assert outcome(events) == ("passed", 3, 3)
    # a repair that crashes again and passes no more starts over from the task
    events, backend, _ = run(tmp_path / "n", "targeted", [CRASH, CRASH2, RIGHT])
    assert [c.messages for c in backend.calls] == [
        first,
        [*first, assistant(CRASH), repair(events, 1)],
        first,
    ]
    assert reasons(events) == ["exec", "restart"]
    # an unusable reply starts over from the task alone too
    events, backend, _ = run(tmp_path / "u", "targeted", ["I cannot help with that.", RIGHT])
    assert [c.messages for c in backend.calls] == [first, first]
    assert reasons(events) == ["restart"]


def test_a_fresh_restart_that_passes_is_a_sample_not_a_repair_row(tmp_path: Path) -> None:
    from trainer.data.episodes import read_log, reconstruct
    from trainer.data.formats import repair_rows

    _, _, session = run(tmp_path, "fresh", [MUL, MUL_BA, RIGHT])
    log, _ = read_log(session.log_path)
    assert log is not None
    episode = reconstruct(log)
    last = episode.attempts[-1]
    assert last.passed and last.prompt == [SYSTEM, user(TASK_TEXT)]
    assert repair_rows(episode) == []  # no feedback in its prompt: nothing was repaired
    # adaptive's restart carries the note: its pass is a repair row
    _, _, noted = run(tmp_path / "a", "adaptive", [MUL, MUL_BA, RIGHT])
    log, _ = read_log(noted.log_path)
    assert log is not None
    (row,) = repair_rows(reconstruct(log))
    assert (row["turn"], row["feedback"]) == (3, "restart")


@pytest.mark.parametrize("policy", ["restart", "mixed", "adaptive"])
def test_a_users_correction_is_always_repaired_never_restarted(tmp_path: Path, policy: str) -> None:
    backend = ScriptedBackend([SUB, SUB2, RIGHT])
    session = AgentSession(TASK, backend, settings_for(tmp_path, policy, max_turns=3))
    events = [e for e in session.feedback("add the numbers") if e.type != "token_delta"]
    session.close()
    # SUB2 passed nothing and was no better than SUB: outside a correction, both policies
    # would start over; here the correction stays in the conversation
    assert reasons(events) == ["user", "exec", "exec"]
    assert all("Feedback on your program" in c.messages[2].content for c in backend.calls)
    assert outcome(events) == ("passed", 3, 3)


def test_a_restart_that_repeats_an_earlier_program_is_resampled_for_free(tmp_path: Path) -> None:
    events, backend, _ = run(tmp_path, "mixed", [SUB, SUB, RIGHT])
    assert reasons(events) == ["restart", "duplicate"]
    assert outcome(events) == ("passed", 3, 3)
    # the duplicate did not use up the budget, and its resample is hot (the loop's rule)
    assert backend.calls[2].params.temperature >= SAMPLED_TEMPERATURE


def test_the_log_names_the_policy_and_reads_back(tmp_path: Path) -> None:
    _, _, session = run(tmp_path, "restart", SCENARIO)
    record = read_session(session.log_path)
    assert record.header.config["policy"] == "restart"
    assert [e.reason for e in record.of_type(RepairRequested)] == ["exec", "restart", "exec"]


def test_make_cycle_picks_the_policy_and_greedy_is_the_plain_cycle(tmp_path: Path) -> None:
    assert tuple(POLICIES) == POLICY_NAMES
    for name in POLICY_NAMES:
        ctx = LoopContext(
            TASK, ScriptedBackend([]), FunctionEnv(), settings_for(tmp_path, name), LoopState()
        )
        cycle = make_cycle(ctx, [SYSTEM, user(TASK_TEXT)])
        if name == "greedy":
            assert type(cycle) is Cycle
        else:
            assert isinstance(cycle, PolicyCycle) and cycle.policy.name == name


def _result(*tests: TestResult, status: ExecStatus = ExecStatus.FAILED) -> ExecResult:
    return ExecResult(status=status, tests=list(tests))


def test_failure_note_is_short_and_says_what_failed() -> None:
    wrong = TestResult(name="assert f(3) == 9", status=TestStatus.FAILED, expected="9", actual="6")
    ok = TestResult(name="assert f(0) == 0", status=TestStatus.PASSED)
    assert (
        failure_note(_result(ok, wrong))
        == "1 of 2 tests failed; `assert f(3) == 9` gave 6, expected 9."
    )
    crash = TestResult(
        name="assert f(1) == 1",
        status=TestStatus.ERROR,
        exception_type="ZeroDivisionError",
        message="ZeroDivisionError: division by zero",
        lineno=4,
    )
    note = failure_note(_result(crash))
    assert note == (
        "1 of 1 tests failed; `assert f(1) == 1` raised ZeroDivisionError: division by zero "
        "at line 4."
    )
    assert raised_at_a_line(_result(crash)) and not raised_at_a_line(_result(ok, wrong))
    assert "did not finish" in failure_note(_result(status=ExecStatus.TIMEOUT))
    assert failure_note(None).startswith("it produced no program")
    long = TestResult(name="assert g() == " + "1" * 500, status=TestStatus.FAILED)
    assert len(failure_note(_result(long))) <= 300


# ---------------------------------------------------------------- the command line


def test_solve_policy_flag_runs_and_logs_that_policy() -> None:
    with serve(CannedOpenAI([SUB, SUB2, RIGHT])) as server:
        result = CliRunner().invoke(
            app,
            [
                "solve",
                TASK.text,
                "--base-url",
                server.url,
                *(a for t in TESTS for a in ("--assert", t)),
                "--policy",
                "mixed",
                "--json",
            ],
        )
        bodies = list(server.requests)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["policy"] == "mixed" and out["outcome"] == "passed" and out["turns"] == 3
    header = read_session(Path(out["log_path"])).header
    assert isinstance(header, SessionStarted) and header.config["policy"] == "mixed"
    # turns 2 and 3 were restarts: system + the task with a note, no earlier program
    assert [len(b["messages"]) for b in bodies] == [2, 2, 2]
    assert "A previous attempt failed" in bodies[2]["messages"][1]["content"]
    assert [b["temperature"] for b in bodies] == [0.0, 0.8, 0.8]


def test_an_unknown_policy_is_refused() -> None:
    result = CliRunner().invoke(app, ["solve", "x", "--assert", "assert 1", "--policy", "nope"])
    assert result.exit_code == 2 and "nope" in result.output


def test_seed_and_eval_take_policy() -> None:
    for command in (["eval"], ["data", "seed"], ["solve"]):
        result = CliRunner().invoke(app, [*command, "--help"], terminal_width=200)
        assert "--policy" in result.output, command


def test_tui_status_line_shows_the_policy() -> None:
    from agent.events import ModelIdentity
    from tui.widgets.status_bar import StatusBar, apply_event

    status = StatusBar()
    started = SessionStarted(
        session_id="s",
        fixloop_version="0",
        model=ModelIdentity(name="qwen", backend="scripted"),
        config={"max_turns": 4, "policy": "restart"},
        task=TASK,
    )
    apply_event(status, started, lambda turn: turn)
    assert status.model == "qwen · restart"
    apply_event(status, started.model_copy(update={"config": {}}), lambda turn: turn)
    assert status.model == "qwen"  # a log from before policies
