"""Golden build: the fixture sessions (written by the real loop) compile to exactly these rows.

Per session (see tests/fixtures/make_sessions.py):
- s01 passes on the first try, accepted: LeTI good; SFT; KTO good; episode.
- s02 fails, repairs from execution feedback: LeTI bad+good; SFT; DPO 1; KTO 2; episode.
- s03 budget spent, typed correction, then a pass: LeTI 2; ILF triple + final; SFT; DPO; KTO 2.
- s04 fails, user edit (passes), accepted: LeTI 2 (model run + edit run); ILF triple + final;
  SFT with the user's code; DPO (edit vs failure); KTO 2.
- s05 passes, rejected: LeTI good; no SFT; KTO bad.
- s06 a reply without code, then a pass: LeTI 1 (only runs count); SFT; DPO vs the reply; KTO 2.
- s07 hidden tests, repaired, reward +1: LeTI 2; SFT; DPO; KTO 2; episode reward 1.
- s08 passes public, fails hidden, reward -1: LeTI good (public run); no SFT; KTO bad.
- s09 repeats s02 exactly: every row an exact duplicate (removed).
- s10 (MBPP test id 11) and s11 (held out by the eval harness) are refused.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.trainer.data_support import SESSIONS, read_jsonl
from tests.trainer.data_support import golden as load_golden
from trainer.data.build import BuildOptions, BuildResult, build, split_of
from trainer.data.formats import BAD, FEEDBACK_CLOSE, FEEDBACK_OPEN, FORMATS, GOOD
from trainer.data.summary import summarize, table


@pytest.fixture(scope="module")
def golden() -> dict:
    return load_golden()


@pytest.fixture(scope="module")
def fixture_build(tmp_path_factory: pytest.TempPathFactory) -> BuildResult:
    """The golden sessions compiled once, with the default options."""
    return build(BuildOptions(sessions=[SESSIONS], out=tmp_path_factory.mktemp("datasets")))


def test_rows_per_format_match_the_golden_counts(fixture_build: BuildResult, golden: dict) -> None:
    assert fixture_build.rows == golden["rows"]
    assert fixture_build.sessions == golden["sessions_used"]
    formats = fixture_build.manifest["formats"]
    assert {f: formats[f]["rows_before_hygiene"] for f in FORMATS} == golden["rows_before_hygiene"]
    assert {f: formats[f]["dedup"]["exact"] for f in FORMATS} == golden["dedup_exact"]
    for fmt in FORMATS:
        assert len(read_jsonl(fixture_build.files[fmt])) == golden["rows"][fmt]


def test_rows_come_from_the_expected_sessions(fixture_build: BuildResult, golden: dict) -> None:
    sft = read_jsonl(fixture_build.files["sft"])
    assert sorted(r["session_id"] for r in sft) == golden["sft_sessions"]
    ilf = read_jsonl(fixture_build.files["ilf"])
    refinements = {r["session_id"]: r["feedback_kind"] for r in ilf if r["kind"] == "refinement"}
    assert refinements == golden["ilf_refinements"]
    assert sorted(r["session_id"] for r in ilf if r["kind"] == "final") == sorted(refinements)
    dpo = read_jsonl(fixture_build.files["dpo"])
    assert {r["session_id"]: r["rejected_why"] for r in dpo} == golden["dpo_rejected_why"]
    kto = Counter(str(r["label"]).lower() for r in read_jsonl(fixture_build.files["kto"]))
    assert dict(kto) == golden["kto_labels"]
    leti = Counter(r["reward"] for r in read_jsonl(fixture_build.files["leti"]))
    assert dict(leti) == golden["leti_rewards"]
    episodes = read_jsonl(fixture_build.files["episodes"])
    rewards = {r["session_id"]: r["reward"] for r in episodes if r["reward"] is not None}
    assert rewards == golden["episode_rewards"]


def test_eval_tasks_are_refused_with_a_clear_reason(
    fixture_build: BuildResult, golden: dict
) -> None:
    refused = {r.session_id: r.reason for r in fixture_build.refused}
    assert sorted(refused) == golden["refused"]
    assert "MBPP's test split" in refused["s10-eval-test-split"]
    assert "held out by the eval harness" in refused["s11-heldout-user-task"]
    used = {s["session_id"] for s in fixture_build.manifest["sessions"]}
    assert used.isdisjoint(refused)
    for path in fixture_build.files.values():
        assert "mbpp/11" not in path.read_text(encoding="utf-8")


def test_manifest_records_sources_models_hashes_and_split(fixture_build: BuildResult) -> None:
    manifest = json.loads(fixture_build.manifest_path.read_text(encoding="utf-8"))
    assert manifest["rows"] == fixture_build.rows
    assert {m for m in manifest["models"]} == {"scripted"}
    assert manifest["models"]["scripted"]["identity"]["backend"] == "scripted"
    assert manifest["models"]["scripted"]["sessions"] == 9
    for source in manifest["sessions"]:
        assert len(source["sha256"]) == 64 and Path(source["path"]).is_file()
    for fmt, info in manifest["formats"].items():
        data = (fixture_build.out / info["file"]).read_bytes()
        assert info["sha256"] == hashlib.sha256(data).hexdigest(), fmt
    split = manifest["split"]
    assert split["by"] == "task"
    assert not set(split["train"]) & set(split["validation"])
    assert manifest["leti_special_tokens"] == [GOOD, BAD, FEEDBACK_OPEN, FEEDBACK_CLOSE]


def test_a_task_never_straddles_train_and_validation(tmp_path: Path) -> None:
    result = build(BuildOptions(sessions=[SESSIONS], out=tmp_path, validation_fraction=0.5))
    sides: dict[str, set[str]] = {}
    for fmt in FORMATS:
        for row in read_jsonl(result.files[fmt]):
            sides.setdefault(row["task_key"], set()).add(row["split"])
            assert row["split"] == split_of(row["task_key"], 0.5)
    assert all(len(s) == 1 for s in sides.values())
    assert {"train", "validation"} <= set().union(*sides.values())


def test_every_output_loads_with_datasets_and_has_trl_columns(fixture_build: BuildResult) -> None:
    from datasets import load_dataset

    expected = {
        "sft": {"messages"},
        "dpo": {"prompt", "chosen", "rejected"},
        "kto": {"prompt", "completion", "label"},
        "ilf": {"prompt", "completion"},
        "leti": {"text"},
        "episodes": {"messages", "reward"},
    }
    for fmt, columns in expected.items():
        dataset = load_dataset("json", data_files=str(fixture_build.files[fmt]), split="train")
        assert len(dataset) == fixture_build.rows[fmt]
        assert columns <= set(dataset.column_names), fmt
        assert {"task_key", "split", "session_id"} <= set(dataset.column_names)
    sft = load_dataset("json", data_files=str(fixture_build.files["sft"]), split="train")
    for row in sft:
        roles = [m["role"] for m in row["messages"]]
        assert roles[0] == "system" and roles[-1] == "assistant" and "user" in roles
    kto = load_dataset("json", data_files=str(fixture_build.files["kto"]), split="train")
    assert kto.features["label"].dtype == "bool"
    dpo = load_dataset("json", data_files=str(fixture_build.files["dpo"]), split="train")
    for row in dpo:
        assert row["chosen"][0]["role"] == row["rejected"][0]["role"] == "assistant"
        assert row["chosen"][0]["content"] != row["rejected"][0]["content"]


def test_trl_recognizes_the_conversational_formats(fixture_build: BuildResult) -> None:
    from trl.data_utils import is_conversational

    for fmt in ("sft", "dpo", "kto", "episodes"):
        for row in read_jsonl(fixture_build.files[fmt]):
            assert is_conversational(row), fmt


def test_formats_option_writes_only_those(tmp_path: Path) -> None:
    result = build(BuildOptions(sessions=[SESSIONS], out=tmp_path, formats=("sft", "dpo")))
    assert set(result.rows) == {"sft", "dpo"}
    assert sorted(p.name for p in tmp_path.glob("*.jsonl")) == ["dpo.jsonl", "sft.jsonl"]
    with pytest.raises(ValueError, match="unknown format"):
        BuildOptions(sessions=[SESSIONS], out=tmp_path, formats=("sft", "ppo"))


def test_build_is_deterministic(tmp_path: Path, fixture_build: BuildResult) -> None:
    again = build(BuildOptions(sessions=[SESSIONS], out=tmp_path))
    for fmt in FORMATS:
        assert again.files[fmt].read_bytes() == fixture_build.files[fmt].read_bytes()


def test_the_data_pipeline_never_imports_torch() -> None:
    code = (
        "import sys, trainer, trainer.data.build, trainer.data.summary, fixloop.cli.data_cmd; "
        "sys.exit('torch' in sys.modules or 'transformers' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr or "torch/transformers imported at import time"


def test_summary_counts_balance_and_feedback_kinds(fixture_build: BuildResult) -> None:
    summary = summarize(fixture_build.out)
    assert {f: sum(s.values()) for f, s in summary.rows.items()} == fixture_build.rows
    assert summary.balance == {
        "leti": {"pass": 8, "fail": 4},
        "kto": {"pass": 6, "fail": 7},
        "episodes": {"pass": 6, "fail": 2},  # s08's held-out reward -1 counts as a failure
    }
    assert summary.feedback_kinds == {"edit": 1, "exec": 2, "format": 1, "user": 1}
    leti_rows = read_jsonl(fixture_build.files["leti"])
    failed = Counter(r["status"] for r in leti_rows if not r["passed"])
    assert summary.leti_feedback == dict(failed) and sum(failed.values()) == 4
    assert "LeTI feedback spans (failed attempts): " in table(summary)
    assert (summary.sessions, summary.refused, summary.problems) == (9, 2, 0)
    leti = next(line for line in table(summary).splitlines() if line.startswith("leti"))
    train, valid = summary.rows["leti"]["train"], summary.rows["leti"]["validation"]
    assert leti.split() == ["leti", str(train), str(valid), "12", "8", "/", "4"]


def test_the_fine_tuning_loader_reads_every_format(fixture_build: BuildResult) -> None:
    """The trainer's own loader (trainer.train.data) accepts what the build writes."""
    from trainer.train.config import Method
    from trainer.train.data import load_examples

    methods: tuple[Method, ...] = ("sft", "leti", "ilf", "dpo", "kto")
    for method in methods:
        rows = read_jsonl(fixture_build.files[method])
        assert len(load_examples(fixture_build.out, method, split=None)) == len(rows), method
        train = [r for r in rows if r["split"] == "train"]
        assert len(load_examples(fixture_build.out, method, split="train")) == len(train)


def test_the_loop_still_writes_sessions_of_the_golden_shape(tmp_path: Path) -> None:
    """Regenerate the fixtures with today's loop: the build must give the golden rows.

    Fails when the loop's behaviour drifts from the committed logs; then rerun
    `python tests/fixtures/make_sessions.py` and review the diff.
    """
    from tests.fixtures.make_sessions import write_fixtures

    fresh = write_fixtures(tmp_path / "sessions")
    assert [p.name for p in fresh] == [p.name for p in sorted(SESSIONS.glob("*/*.jsonl"))]
    result = build(BuildOptions(sessions=[tmp_path / "sessions"], out=tmp_path / "out"))
    assert result.rows == load_golden()["rows"]
