"""The real-bug benchmark's repositories: the manifest of libraries and bugs, and a fresh git
repository per run (the sdist downloaded and sha256-checked, unpacked, committed, the bug's
patch committed on top, the user's uncommitted work left beside it).

Used by bench/bench_realrepo.py; see its docstring for the benchmark.
"""

from __future__ import annotations

import hashlib
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bench" / "realrepo"
USER_LINE = "\n.. My own notes, not committed yet: keep this line.\n"
UNTRACKED = ("NOTES.local.txt", "untracked work in progress\n")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- the manifest
@dataclass(frozen=True)
class Library:
    name: str
    version: str
    sdist: str
    sha256: str
    license: str
    license_file: str
    user_file: str
    test_options: str


@dataclass(frozen=True)
class Bug:
    id: str
    library: Library
    kind: str
    file: str
    function: str
    test_file: str
    test: str
    what: str

    @property
    def patch(self) -> Path:
        return DATA / "patches" / f"{self.id}.patch"

    def test_cmd(self, python: str = "python") -> str:
        options = f" {self.library.test_options}" if self.library.test_options else ""
        return f"{python} -m pytest -x -q{options} {self.test_file} -k {shlex.quote(self.test)}"


def load_manifest(path: Path = DATA / "manifest.toml") -> list[Bug]:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    libraries = {name: Library(name=name, **spec) for name, spec in data["libraries"].items()}
    bugs = []
    for spec in data["bugs"]:
        spec = dict(spec)
        spec["library"] = libraries[spec["library"]]
        bugs.append(Bug(**spec))
    return bugs


# ---------------------------------------------------------------- repositories
def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=Bench User", "-c", "user.email=bench@example.invalid", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_sdist(lib: Library, cache: Path) -> Path:
    """The library's source distribution, downloaded once and checked against the manifest."""
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / lib.sdist
    if not path.is_file():
        log(f"downloading {lib.name}=={lib.version} (sdist)")
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-binary",
                ":all:",
                "--no-deps",
                "--quiet",
                f"{lib.name}=={lib.version}",
                "-d",
                str(cache),
            ],
            check=True,
        )
    found = sha256(path)
    if found != lib.sha256:
        raise SystemExit(f"{path}: sha256 {found}, the manifest says {lib.sha256}")
    return path


def unpack(sdist: Path, dest: Path) -> None:
    """The sdist's files (its top directory stripped) in `dest`; compiled files dropped."""
    with tempfile.TemporaryDirectory(prefix="fixloop-sdist-") as tmp:
        with tarfile.open(sdist) as tar:
            tar.extractall(tmp, filter="data")
        [top] = list(Path(tmp).iterdir())
        shutil.copytree(top, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".git"))


@dataclass
class Prepared:
    repo: Path
    base: str  # the commit of the library as released
    head: str  # the commit with the bug
    user_file_text: str  # what the user's uncommitted edit left in user_file


def prepare(bug: Bug, dest: Path, cache: Path, *, before_bug: Any = None) -> Prepared:
    """A fresh git repository of the library with the bug committed and the user's work left
    uncommitted. `before_bug(repo)` runs on the released library, before the bug is applied."""
    if dest.exists():
        shutil.rmtree(dest)
    unpack(fetch_sdist(bug.library, cache), dest)
    git(dest, "init", "-q", "-b", "main")
    git(dest, "config", "user.name", "Bench User")
    git(dest, "config", "user.email", "bench@example.invalid")
    git(dest, "config", "commit.gpgsign", "false")
    git(dest, "add", "-A")
    git(dest, "commit", "-qm", f"{bug.library.name} {bug.library.version}")
    base = git(dest, "rev-parse", "HEAD").strip()
    if before_bug is not None:
        before_bug(dest)
    git(dest, "apply", "--whitespace=nowarn", str(bug.patch))
    git(dest, "commit", "-qam", "Local changes")
    head = git(dest, "rev-parse", "HEAD").strip()
    user = dest / bug.library.user_file
    text = user.read_text(encoding="utf-8") + USER_LINE
    user.write_text(text, encoding="utf-8")
    (dest / UNTRACKED[0]).write_text(UNTRACKED[1], encoding="utf-8")
    return Prepared(dest, base, head, text)


def user_work_intact(bug: Bug, prepared: Prepared) -> bool:
    repo = prepared.repo
    status = sorted(git(repo, "status", "--porcelain").splitlines())
    untracked = repo / UNTRACKED[0]
    return (
        status == sorted([f" M {bug.library.user_file}", f"?? {UNTRACKED[0]}"])
        and (repo / bug.library.user_file).read_text(encoding="utf-8") == prepared.user_file_text
        and untracked.is_file()
        and untracked.read_text(encoding="utf-8") == UNTRACKED[1]
    )
