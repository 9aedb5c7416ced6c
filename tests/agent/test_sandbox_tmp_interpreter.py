"""Regression: a checkout (and its .venv) under /tmp must still run programs in bubblewrap.

bwrap mounts a private /tmp; the interpreter living there vanished inside the sandbox
("bwrap: execvp /tmp/.../.venv/bin/python: No such file or directory"), which failed
every sandboxed run in a CI clone under /tmp.
"""

from __future__ import annotations

import shutil
import site
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from agent.config import PROJECT_ROOT

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap")


def test_interpreter_under_tmp_is_visible_in_the_sandbox(tmp_path: Path) -> None:
    assert str(tmp_path).startswith("/tmp"), "this test needs its venv under /tmp"
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site_dir = next((venv / "lib").glob("python3*/site-packages"))
    paths = [str(PROJECT_ROOT), *site.getsitepackages()]
    (site_dir / "fixloop_test_paths.pth").write_text("\n".join(paths) + "\n")
    script = textwrap.dedent(
        """
        import sys
        from agent.sandbox import Sandbox
        assert sys.prefix.startswith("/tmp"), sys.prefix
        result = Sandbox().run_asserts("def f(x):\\n    return x * 2\\n", ["assert f(2) == 4"])
        print(result.status.value, result.isolation.level)
        print(result.stderr.text)
        """
    )
    out = subprocess.run(
        [str(venv / "bin" / "python"), "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[:2] == ["passed", "bwrap"], out.stdout
