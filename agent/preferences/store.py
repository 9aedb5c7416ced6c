"""The user's standing preferences, stored versioned as JSON in the data directory.

One file per preference, `DATA_DIR/preferences/<id>.json`, written atomically (temp file,
fsync, rename), so a reader never sees half a file. A preference keeps every verifier it has
had: approving a new one (synthesized, hand-written, edited) appends a version, and the last
version is the one checked. Removing a preference deletes its file.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from agent.errors import FixloopError
from agent.hashing import normalize_text

FILE_FORMAT = 1
MAX_ID_WORDS = 6
MAX_ID_CHARS = 40

VerifierSource = Literal["synthesized", "hand", "edited", "reference"]


class PreferenceError(FixloopError, ValueError):
    """A preference that cannot be found, stored or read; the message says what to do."""


class Case(BaseModel):
    """A labelled code snippet: does `code` follow the preference?"""

    code: str
    follows: bool


class VerifierVersion(BaseModel):
    """One verifier a preference has had, with the cases it was accepted on."""

    version: int
    verifier: str  # Python source defining `evaluate(code: str) -> bool`
    cases: list[Case] = Field(default_factory=list)
    source: VerifierSource = "synthesized"
    created_at: float = Field(default_factory=time.time)
    model: str | None = None  # the model that wrote it (ModelIdentity.key), if one did
    report: dict[str, Any] = Field(default_factory=dict)  # the synthesis yield, if synthesized


class Preference(BaseModel):
    """A standing preference: its text, whether it is checked, and its verifier's history."""

    format: int = FILE_FORMAT
    id: str
    text: str
    active: bool = True
    created_at: float = Field(default_factory=time.time)
    versions: list[VerifierVersion] = Field(default_factory=list)

    @property
    def current(self) -> VerifierVersion:
        if not self.versions:
            raise PreferenceError(f"preference {self.id} has no verifier")
        return self.versions[-1]


def slug(text: str) -> str:
    """A readable id from the text: 'Use pathlib, not os.path' -> 'use-pathlib-not-os-path'."""
    words = re.findall(r"[a-z0-9]+", text.lower())[:MAX_ID_WORDS]
    out = "-".join(words)[:MAX_ID_CHARS].strip("-")
    return out or "preference"


class PreferenceStore:
    """The preferences under `root` (normally `Settings.data_dir / "preferences"`)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @classmethod
    def for_data_dir(cls, data_dir: Path) -> PreferenceStore:
        return cls(Path(data_dir) / "preferences")

    # ------------------------------------------------------------ reading
    def _path(self, pref_id: str) -> Path:
        return self.root / f"{pref_id}.json"

    def _read(self, path: Path) -> Preference:
        try:
            pref = Preference.model_validate_json(path.read_bytes())
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ())) or "the file"
            raise PreferenceError(
                f"preference file {path} cannot be read ({where}: {first['msg']}); "
                "fix it or delete it"
            ) from None
        except OSError as exc:
            raise PreferenceError(
                f"preference file {path} cannot be read ({exc.strerror or exc})"
            ) from None
        if pref.format > FILE_FORMAT:
            raise PreferenceError(
                f"preference file {path} was written by a newer fixloop (format {pref.format}); "
                "upgrade fixloop"
            )
        return pref

    def all(self) -> list[Preference]:
        """Every stored preference, oldest first."""
        if not self.root.is_dir():
            return []
        prefs = [self._read(p) for p in sorted(self.root.glob("*.json"))]
        return sorted(prefs, key=lambda p: (p.created_at, p.id))

    def active(self) -> list[Preference]:
        """The preferences every attempt is checked against (those with a verifier)."""
        return [p for p in self.all() if p.active and p.versions]

    def require_active(self, why: str) -> list[Preference]:
        """The active preferences; a PreferenceError naming the fix when there are none
        (`why`: what needs them, e.g. "the --preferences round trains the model to follow
        them")."""
        active = self.active()
        if not active:
            stored = self.all()
            have = f"{len(stored)} stored, none active" if stored else "none stored"
            raise PreferenceError(
                f"no active preferences in {self.root} ({have}): {why}. Add one with `fixloop "
                'prefs add "use pathlib, not os.path"` (or `--reference ID`; `fixloop prefs '
                "reference` lists them), or switch one on with `fixloop prefs enable ID`"
            )
        return active

    def get(self, key: str) -> Preference:
        """A preference by id, or by a prefix of exactly one id."""
        path = self._path(key)
        if "/" not in key and path.is_file():
            return self._read(path)
        matches = [p for p in self.all() if p.id.startswith(key)]
        if len(matches) == 1:
            return matches[0]
        known = ", ".join(p.id for p in self.all()) or "none yet"
        if matches:
            names = ", ".join(p.id for p in matches)
            raise PreferenceError(f"preference {key!r} is ambiguous ({names}); give more of the id")
        raise PreferenceError(
            f"no preference {key!r} (stored: {known}); `fixloop prefs list` shows them"
        )

    def find_text(self, text: str) -> Preference | None:
        """The stored preference with this text (case and spacing ignored), if any."""
        wanted = normalize_text(text)
        return next((p for p in self.all() if normalize_text(p.text) == wanted), None)

    # ------------------------------------------------------------ writing
    def save(self, pref: Preference) -> Path:
        """Write one preference atomically; returns its path."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = self._path(pref.id)
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=f".{pref.id}-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(pref.model_dump_json(indent=2) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        with contextlib.suppress(OSError):  # the rename itself survives a crash
            dir_fd = os.open(self.root, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        return path

    def _new_id(self, text: str) -> str:
        base = slug(text)
        candidate, n = base, 2
        while self._path(candidate).exists():
            candidate, n = f"{base}-{n}", n + 1
        return candidate

    def add(self, text: str, version: VerifierVersion) -> Preference:
        """Store a verifier for `text`: a new preference, or a new version of the same text."""
        text = text.strip()
        if not text:
            raise PreferenceError("a preference needs a text, e.g. 'use pathlib, not os.path'")
        pref = self.find_text(text)
        if pref is None:
            pref = Preference(id=self._new_id(text), text=text)
        return self.add_version(pref, version)

    def add_version(self, pref: Preference, version: VerifierVersion) -> Preference:
        """Append `version` (renumbered after the last one) and make the preference active."""
        number = pref.versions[-1].version + 1 if pref.versions else 1
        updated = pref.model_copy(
            update={
                "versions": [*pref.versions, version.model_copy(update={"version": number})],
                "active": True,
            }
        )
        self.save(updated)
        return updated

    def set_active(self, key: str, active: bool) -> Preference:
        pref = self.get(key).model_copy(update={"active": active})
        self.save(pref)
        return pref

    def remove(self, key: str) -> Preference:
        pref = self.get(key)
        self._path(pref.id).unlink()
        return pref
