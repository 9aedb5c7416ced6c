"""A private copy of the user's tree, uncommitted changes included, where proposals are tested.

Inside git the copy holds every tracked and untracked-but-not-ignored file as it
is on disk now (so the user's dirty work is tested along with fixloop's edits);
outside git it holds the directory minus caches and virtual environments. The
user's working tree is only ever read.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

from agent.workspace.repo import GitRepo, WorkspaceError, decode, inside

SKIP_DIRS = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        ".venv",
        "venv",
        "env",
        "__pycache__",
        "node_modules",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        ".tox",
        ".nox",
        "build",
        "dist",
        ".eggs",
    }
)
MAX_COPY_BYTES = 200 * 1024 * 1024
MAX_PLAIN_FILES = 20_000


def _walk_plain(root: Path) -> list[str]:
    """Files under a plain directory, pruning caches, VCS data and virtual environments."""
    files: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(
            d for d in dirnames if d not in SKIP_DIRS and not d.endswith(".egg-info")
        )
        rel_dir = Path(dirpath).relative_to(root)
        files.extend((rel_dir / name).as_posix() for name in sorted(filenames))
        if len(files) > MAX_PLAIN_FILES:
            raise WorkspaceError(
                f"{root} is not a git repository and holds more than {MAX_PLAIN_FILES} files; "
                "fixloop will not copy all of that. Run it in the project's own directory "
                "(or `git init` the project)."
            )
    return files


class ScratchCopy:
    """The snapshot (taken once, at creation) and a working copy that proposals are written into.

    `base_text(path)` is a file as it was at snapshot time; `apply(files)` resets the
    files the previous proposal changed and writes the new ones.
    """

    def __init__(self, source: Path, repo: GitRepo | None, keep: bool = False) -> None:
        self.source = source.resolve()
        self.keep = keep
        self.files = repo.listed_files() if repo else _walk_plain(self.source)
        total = sum((self.source / rel).lstat().st_size for rel in self.files)
        if total > MAX_COPY_BYTES:
            raise WorkspaceError(
                f"{self.source} holds more than {MAX_COPY_BYTES >> 20} MB of files to copy; "
                "point --repo at the project itself (or add build outputs to .gitignore)."
            )
        self._tmp = Path(tempfile.mkdtemp(prefix=f"fixloop-{self.source.name}-"))
        self.dir = self._tmp / self.source.name
        try:
            self.dir.mkdir()
            for rel in self.files:
                dst = self.dir / rel
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(self.source / rel, dst, follow_symlinks=False)
        except OSError as exc:
            self.close(force=True)
            raise WorkspaceError(
                f"cannot copy {self.source} to a scratch directory: {exc}"
            ) from exc
        self._base: dict[str, bytes | None] = {}
        self._written: set[str] = set()

    def base_text(self, path: str) -> str | None:
        """A file as it was when the snapshot was taken (None: it did not exist)."""
        if path in self._base:
            data = self._base[path]
            return None if data is None else decode(data, path)
        full = self.dir / path
        return decode(full.read_bytes(), path) if full.is_file() else None

    def apply(self, files: Mapping[str, str]) -> None:
        """Make the copy the snapshot plus exactly these files."""
        for path in self._written - set(files):
            self._restore(path)
        for path, text in files.items():
            full = inside(self.dir, path)
            if path not in self._base:
                self._base[path] = full.read_bytes() if full.is_file() else None
            full.parent.mkdir(parents=True, exist_ok=True)
            full.write_bytes(text.encode("utf-8"))  # as is: no newline translation
            self._written.add(path)

    def _restore(self, path: str) -> None:
        full = self.dir / path
        data = self._base.get(path)
        if data is None:
            full.unlink(missing_ok=True)
        else:
            full.write_bytes(data)
        self._written.discard(path)

    def close(self, force: bool = False) -> None:
        if force or not self.keep:
            shutil.rmtree(self._tmp, ignore_errors=True)
