"""Run untrusted model code safely and turn what happened into feedback a model can use."""

from agent.sandbox.batch import BatchJob, run_batch
from agent.sandbox.feedback import render_feedback
from agent.sandbox.limits import SandboxLimits
from agent.sandbox.result import (
    CapturedText,
    ExecResult,
    ExecStatus,
    Isolation,
    TestResult,
    TestStatus,
)
from agent.sandbox.sandbox import Sandbox, SandboxError

__all__ = [
    "BatchJob",
    "CapturedText",
    "ExecResult",
    "ExecStatus",
    "Isolation",
    "Sandbox",
    "SandboxError",
    "SandboxLimits",
    "TestResult",
    "TestStatus",
    "render_feedback",
    "run_batch",
]
