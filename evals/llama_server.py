"""Start a llama.cpp OpenAI-compatible server on a GGUF, for tests and benchmarks.

Two servers can be started:

- llama.cpp's own ``llama-server`` (give its path as `binary`): `parallel` slots decoded
  together (continuous batching), each keeping its own prompt cache (`-np N`; the
  context `-c` is shared by the slots, so it is `n_ctx * parallel`);
- llama-cpp-python's ``python -m llama_cpp.server`` (the default; ``pip install
  'fixloop[server]'``), run through ``evals.llama_cpp_server`` so that it loads with
  fixloop's weight-repacking choice (off on AMX CPUs): one model, one generation at a
  time; parallel requests wait their turn (started with ``--interrupt_requests False``:
  by default a new request would cut off the one being streamed).

`llama_server(...)` is a context manager that starts the server on a free loopback
port, waits until `GET /v1/models` answers, yields the API root and stops the server.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from agent.backends.llama_repack import repack_from_environment
from agent.errors import FixloopError


class ServerError(FixloopError, RuntimeError):
    """The server could not start; the message says why (and where its log is)."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_command(
    model: Path,
    port: int,
    *,
    n_ctx: int = 4096,
    parallel: int = 1,
    threads: int | None = None,
    binary: str | None = None,
    alias: str | None = None,
) -> list[str]:
    """The command line that serves `model` on 127.0.0.1:`port`."""
    if binary:
        cmd = [binary, "-m", str(model), "--host", "127.0.0.1", "--port", str(port)]
        cmd += ["-c", str(n_ctx * parallel), "-np", str(parallel)]
        if threads:
            cmd += ["-t", str(threads)]
        if alias:
            cmd += ["--alias", alias]
        if not repack_from_environment():
            cmd += ["--no-repack"]
        return cmd
    cmd = [sys.executable, "-m", "evals.llama_cpp_server", "--model", str(model)]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(n_ctx)]
    cmd += ["--interrupt_requests", "False"]
    if threads:
        cmd += ["--n_threads", str(threads)]
    if alias:
        cmd += ["--model_alias", alias]
    return cmd


def _check_python_server() -> None:
    try:
        import llama_cpp.server.app  # noqa: F401
    except ImportError as exc:
        raise ServerError(
            f"llama-cpp-python's server is not installed ({exc}); pip install "
            "'fixloop[server]' (or give the path of a llama-server binary)"
        ) from exc


@contextmanager
def llama_server(
    model: Path,
    *,
    n_ctx: int = 4096,
    parallel: int = 1,
    threads: int | None = None,
    binary: str | None = None,
    alias: str | None = None,
    log_path: Path | None = None,
    timeout_s: float = 180.0,
) -> Iterator[str]:
    """Serve `model` for the duration of the block; yields the API root
    (``http://127.0.0.1:PORT/v1``)."""
    if binary is None:
        _check_python_server()
    port = free_port()
    cmd = server_command(
        model, port, n_ctx=n_ctx, parallel=parallel, threads=threads, binary=binary, alias=alias
    )
    if log_path is None:
        log_path = Path(os.devnull)
    log = open(log_path, "ab")  # noqa: SIM115 - closed in the finally below
    proc = subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    root = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise ServerError(
                    f"the server exited with status {proc.returncode} before answering "
                    f"({' '.join(cmd)}; log: {log_path})"
                )
            try:
                if httpx.get(f"{root}/models", timeout=2.0, trust_env=False).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise ServerError(
                    f"the server did not answer in {timeout_s:.0f} s (log: {log_path})"
                )
            time.sleep(0.25)
        yield root
    finally:
        stop(proc)
        log.close()


def stop(proc: subprocess.Popen[bytes], grace_s: float = 15.0) -> None:
    """SIGTERM the server's process group, then SIGKILL it if it lingers."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
