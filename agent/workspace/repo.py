"""gitpython behind one small class: everything fixloop asks of a user's repository.

Every git failure surfaces as :class:`WorkspaceError` with a message that says
what went wrong and what to do; callers catch that one type (git's own errors
are the tuple :data:`ANY_GIT_ERROR`).

fixloop never runs porcelain that could lose work (no stash, checkout, reset
--hard). Commits are built with plumbing on a private index file, so the
user's staged changes are never swept into a fixloop commit.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import git
from gitdb import IStream

from agent.errors import FixloopError

ANY_GIT_ERROR: tuple[type[BaseException], ...] = (
    git.exc.ODBError,
    git.exc.GitError,
    OSError,
)

TRAILER_KEY = "Fixloop-Session"


class WorkspaceError(FixloopError, RuntimeError):
    """A repository operation fixloop refuses or cannot do; the message says why and what to do."""


# What an unfinished git operation leaves in the git directory, its name, and how to end it.
# In that state HEAD, the index and the working tree are in the middle of git's operation:
# fixloop neither works on the tree nor commits nor undoes until the user ends it.
_IN_PROGRESS: tuple[tuple[str, str, str], ...] = (
    ("MERGE_HEAD", "merge", "conclude it with `git commit`, or abort it with `git merge --abort`"),
    ("rebase-merge", "rebase", "`git rebase --continue`, or `git rebase --abort`"),
    ("rebase-apply/applying", "`git am`", "`git am --continue`, or `git am --abort`"),
    ("rebase-apply", "rebase", "`git rebase --continue`, or `git rebase --abort`"),
    (
        "CHERRY_PICK_HEAD",
        "cherry-pick",
        "`git cherry-pick --continue`, or `git cherry-pick --abort`",
    ),
    ("REVERT_HEAD", "revert", "`git revert --continue`, or `git revert --abort`"),
    ("BISECT_LOG", "bisect", "end it with `git bisect reset`"),
)


@dataclass(frozen=True)
class MergeResult:
    text: str
    conflicts: int


def decode(data: bytes, path: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WorkspaceError(
            f"{path} is not UTF-8 text; fixloop only edits text files. Leave it out of the task."
        ) from exc


def inside(root: Path, rel: str) -> Path:
    """`root / rel`, refusing a path that leaves `root` (through `..` or a symlink)."""
    full = root / rel
    real_root = root.resolve()
    if not full.resolve().is_relative_to(real_root):
        raise WorkspaceError(
            f"{rel} leads outside {root} (through a symbolic link); fixloop writes only "
            "inside the repository."
        )
    return full


def refuse_unfinished_operation(path: Path | str) -> None:
    """WorkspaceError when `path` is in a repository mid-merge, mid-rebase... (else nothing).

    For callers that must refuse before doing anything costly (loading a model).
    """
    found = GitRepo.find(path) if Path(path).exists() else None
    if found is not None:
        with found:
            found.require_no_operation_in_progress()


class GitRepo:
    """A user's git repository (the working tree that contains `path`)."""

    def __init__(self, path: Path | str) -> None:
        try:
            self.repo = git.Repo(Path(path).resolve(), search_parent_directories=True)
        except (git.exc.InvalidGitRepositoryError, git.exc.NoSuchPathError) as exc:
            raise WorkspaceError(f"{path} is not inside a git repository.") from exc
        if self.repo.bare or self.repo.working_tree_dir is None:
            raise WorkspaceError(f"{path} is a bare repository; fixloop needs a working tree.")
        self.root = Path(self.repo.working_tree_dir).resolve()

    @classmethod
    def find(cls, path: Path | str) -> GitRepo | None:
        """The repository containing `path`, or None outside git (close it when done)."""
        try:
            return cls(path)
        except WorkspaceError:
            return None

    @classmethod
    def root_of(cls, path: Path | str) -> Path | None:
        """The working tree root of the repository containing `path`, or None."""
        found = cls.find(path) if Path(path).exists() else None
        if found is None:
            return None
        with found:
            return found.root

    def close(self) -> None:
        """End gitpython's long-lived `git cat-file` helpers (use `with GitRepo(...)`)."""
        self.repo.close()

    def __enter__(self) -> GitRepo:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ reading
    def operation_in_progress(self) -> tuple[Path, str, str] | None:
        """(marker file, operation, how to end it) of an unfinished merge, rebase... or None."""
        git_dir = Path(self.repo.git_dir)  # a linked worktree's own git directory
        for marker, what, fix in _IN_PROGRESS:
            if (git_dir / marker).exists():
                return git_dir / marker, what, fix
        return None

    def require_no_operation_in_progress(self) -> None:
        """WorkspaceError when git is in the middle of a merge, rebase, cherry-pick, revert..."""
        found = self.operation_in_progress()
        if found is None:
            return
        marker, what, fix = found
        shown = marker.relative_to(self.root) if marker.is_relative_to(self.root) else marker
        raise WorkspaceError(
            f"Refusing to work on {self.root}: a {what} is in progress ({shown} exists), so "
            "HEAD, the index and the working tree are in the middle of it. Nothing was "
            f"changed. Finish or abort the {what} first: {fix}. Then run fixloop again."
        )

    def git(self, *args: str, env: Mapping[str, str] | None = None) -> str:
        try:
            return str(self.repo.git.execute(["git", *args], env=dict(env or {})))
        except ANY_GIT_ERROR as exc:
            raise WorkspaceError(f"git {' '.join(args[:2])} failed in {self.root}: {exc}") from exc

    def head_sha(self) -> str | None:
        try:
            return self.repo.head.commit.hexsha
        except ValueError:  # no commits yet
            return None

    def listed_files(self) -> list[str]:
        """Tracked and untracked-but-not-ignored files that exist in the working tree."""
        out = self.git("ls-files", "-z", "--cached", "--others", "--exclude-standard")
        paths = sorted({p for p in out.split("\0") if p})
        return [p for p in paths if (self.root / p).is_file() or (self.root / p).is_symlink()]

    def worktree_text(self, path: str) -> str | None:
        full = self.root / path
        return decode(full.read_bytes(), path) if full.is_file() else None

    def blob_bytes(self, rev: str | None, path: str) -> bytes | None:
        """The file at a commit (None: absent, or no commit)."""
        if rev is None:
            return None
        try:
            blob = self.repo.commit(rev).tree / path
        except KeyError:
            return None
        except (*ANY_GIT_ERROR, ValueError) as exc:
            raise WorkspaceError(f"cannot read {path} at {rev}: {exc}") from exc
        return bytes(blob.data_stream.read())

    def blob_text(self, rev: str | None, path: str) -> str | None:
        data = self.blob_bytes(rev, path)
        return None if data is None else decode(data, path)

    def blob_text_by_sha(self, sha: str, path: str) -> str:
        try:
            data = self.repo.odb.stream(bytes.fromhex(sha)).read()
        except ANY_GIT_ERROR as exc:
            raise WorkspaceError(f"cannot read the staged version of {path}: {exc}") from exc
        return decode(bytes(data), path)

    def index_entry(self, path: str) -> tuple[str, str] | None:
        """(mode, blob sha) of `path` in the user's index, or None when not staged/tracked."""
        out = self.git("ls-files", "--stage", "--", path)
        if not out.strip():
            return None
        meta = out.splitlines()[0].split("\t", 1)[0].split()
        return meta[0], meta[1]

    def tree_mode(self, rev: str | None, path: str) -> str | None:
        if rev is None:
            return None
        try:
            return oct((self.repo.commit(rev).tree / path).mode)[2:]
        except KeyError:
            return None

    def message(self, rev: str) -> str:
        return str(self.repo.commit(rev).message)

    def changed_paths(self, rev: str) -> list[str]:
        """Paths a commit changes relative to its first parent (or adds, for a root commit)."""
        out = self.git("diff-tree", "--no-commit-id", "-r", "--name-only", "-z", "--root", rev)
        return [p for p in out.split("\0") if p]

    def iter_commits(self, rev: str = "HEAD", max_count: int | None = None) -> Iterator[git.Commit]:
        if self.head_sha() is None:
            return iter(())
        kwargs = {"first_parent": True}
        if max_count is not None:
            kwargs["max_count"] = max_count  # type: ignore[assignment]
        return self.repo.iter_commits(rev, **kwargs)

    # ------------------------------------------------------------ writing
    def store_blob(self, text: str) -> str:
        data = text.encode("utf-8")
        try:
            return self.repo.odb.store(IStream("blob", len(data), BytesIO(data))).binsha.hex()
        except ANY_GIT_ERROR as exc:
            raise WorkspaceError(f"cannot write to {self.root}/.git: {exc}") from exc

    def merge_text(self, current: str, base: str, other: str) -> MergeResult:
        """Three-way merge of text (`git merge-file`): `current` plus the base->other change."""
        with tempfile.TemporaryDirectory(prefix="fixloop-merge-") as tmp:
            names = []
            for name, text in (("current", current), ("base", base), ("other", other)):
                p = Path(tmp) / name
                p.write_bytes(text.encode("utf-8"))
                names.append(str(p))
            proc = subprocess.run(
                ["git", "merge-file", "-p", "--quiet", *names],
                capture_output=True,
                check=False,
            )
        if proc.returncode < 0 or proc.returncode > 127:
            raise WorkspaceError(f"git merge-file failed: {proc.stderr.decode(errors='replace')}")
        return MergeResult(proc.stdout.decode("utf-8"), proc.returncode)

    def commit_files(self, files: Mapping[str, str | None], message: str) -> str:
        """Commit exactly these file contents on top of HEAD (None deletes) and move HEAD.

        Built on a private index: whatever the user has staged stays staged and out of
        the commit. The user's index entries for these paths are not changed here.
        """
        self.require_no_operation_in_progress()
        parent = self.head_sha()
        self.require_identity()
        with tempfile.TemporaryDirectory(prefix="fixloop-index-") as tmp:
            env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
            if parent:
                self.git("read-tree", parent, env=env)
            for path, text in files.items():
                if text is None:
                    self.git("update-index", "--force-remove", "--", path, env=env)
                    continue
                mode = self.tree_mode(parent, path) or self._file_mode(path)
                sha = self.store_blob(text)
                self.git("update-index", "--add", "--cacheinfo", f"{mode},{sha},{path}", env=env)
            tree = self.git("write-tree", env=env).strip()
        args = ["commit-tree", tree, "-m", message]
        if parent:
            args[2:2] = ["-p", parent]
        sha = self.git(*args).strip()
        self.move_head(sha, parent, f"fixloop: {message.splitlines()[0]}")
        return sha

    def move_head(self, new: str, expected_old: str | None, reason: str) -> None:
        """Point HEAD's branch at `new`, only if it still points at `expected_old`."""
        old = expected_old or "0" * 40
        self.git("update-ref", "-m", reason, "HEAD", new, old)

    def set_index(self, path: str, text: str | None, mode: str | None = None) -> None:
        """Set the user's index entry for one path (None removes it from the index)."""
        if text is None:
            self.git("update-index", "--force-remove", "--", path)
            return
        sha = self.store_blob(text)
        mode = mode or self._file_mode(path)
        self.git("update-index", "--add", "--cacheinfo", f"{mode},{sha},{path}")

    def _file_mode(self, path: str) -> str:
        full = self.root / path
        return "100755" if full.is_file() and os.access(full, os.X_OK) else "100644"

    def require_identity(self) -> None:
        reader = self.repo.config_reader()
        name = reader.get_value("user", "name", default="") or os.environ.get("GIT_AUTHOR_NAME")
        email = reader.get_value("user", "email", default="") or os.environ.get("GIT_AUTHOR_EMAIL")
        if not name or not email:
            raise WorkspaceError(
                "git has no identity to commit with. Set one: git config user.name 'Your Name' "
                "&& git config user.email you@example.com"
            )
