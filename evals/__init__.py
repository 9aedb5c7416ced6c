"""The evaluation harness: suites, the runner over the agent's own loop, metrics, reports.

`run_suite` evaluates one model on a list of tasks through `AgentSession`
(purpose "eval"), resumably; `load_suite` resolves MBPP, HumanEval, the user's
held-out sessions or a file; `is_heldout` and `eval_test_ids` are the trainer's
guard against training on what is evaluated.
"""

from evals.errors import EvalError
from evals.metrics import pass_at_k, wilson_interval
from evals.results import EpisodeRecord, SuiteResult
from evals.runner import run_suite
from evals.suites import SuiteError, eval_test_ids, is_heldout, load_suite

__all__ = [
    "EpisodeRecord",
    "EvalError",
    "SuiteError",
    "SuiteResult",
    "eval_test_ids",
    "is_heldout",
    "load_suite",
    "pass_at_k",
    "run_suite",
    "wilson_interval",
]
