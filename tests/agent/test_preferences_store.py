"""Preferences stored versioned as JSON in the data directory (issue 16, item 1)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent import paths
from agent.config import Settings
from agent.errors import FixloopError
from agent.preferences import Case, PreferenceError, PreferenceStore, VerifierVersion
from agent.preferences.store import slug

VERIFIER = "def evaluate(code: str) -> bool:\n    return 'os.path' not in code\n"


def version(source: str = VERIFIER) -> VerifierVersion:
    return VerifierVersion(
        version=0, verifier=source, cases=[Case(code="import os.path", follows=False)]
    )


def test_default_location_is_the_data_dir_and_follows_settings(tmp_path: Path) -> None:
    assert PreferenceStore.for_data_dir(paths.default_data_dir()).root == (
        paths.default_data_dir() / "preferences"
    )
    cfg = Settings(data_dir=tmp_path / "data")
    assert PreferenceStore.for_data_dir(cfg.data_dir).root == tmp_path / "data" / "preferences"


def test_add_list_get_versions_and_remove(tmp_path: Path) -> None:
    store = PreferenceStore(tmp_path / "prefs")
    assert store.all() == [] and store.active() == []
    pref = store.add("Use pathlib, not os.path.", version())
    assert pref.id == "use-pathlib-not-os-path" and pref.current.version == 1
    on_disk = json.loads((tmp_path / "prefs" / f"{pref.id}.json").read_text())
    assert on_disk["format"] == 1 and on_disk["versions"][0]["verifier"] == VERIFIER
    # the same text (case and spacing ignored) is a new version, not a new preference
    again = store.add("use  pathlib, NOT os.path.", version(VERIFIER + "# v2\n"))
    assert again.id == pref.id and [v.version for v in again.versions] == [1, 2]
    assert store.get(pref.id).current.verifier.endswith("# v2\n")
    other = store.add("No print in library code", version())
    assert [p.id for p in store.all()] == [pref.id, other.id]
    assert store.get("use-path").id == pref.id  # a unique prefix
    store.set_active(other.id, False)
    assert [p.id for p in store.active()] == [pref.id]
    store.remove(pref.id)
    assert [p.id for p in store.all()] == [other.id]
    assert not list((tmp_path / "prefs").glob(".*.tmp"))  # atomic writes leave no temp file


def test_id_collisions_and_errors(tmp_path: Path) -> None:
    store = PreferenceStore(tmp_path)
    a = store.add("no print", version())
    b = store.add("no print!!", version())  # another text with the same slug
    assert (a.id, b.id) == ("no-print", "no-print-2")
    assert store.get("no-print").id == "no-print"  # an exact id wins over prefixes
    with pytest.raises(PreferenceError, match="ambiguous"):
        store.get("no-pri")
    with pytest.raises(PreferenceError, match="no preference 'zzz'") as info:
        store.get("zzz")
    assert isinstance(info.value, FixloopError)
    with pytest.raises(PreferenceError, match="needs a text"):
        store.add("   ", version())
    assert slug("!!!") == "preference"


def test_a_broken_or_newer_file_is_a_clear_error(tmp_path: Path) -> None:
    store = PreferenceStore(tmp_path)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(PreferenceError, match="cannot be read"):
        store.all()
    (tmp_path / "bad.json").write_text(json.dumps({"format": 99, "id": "bad", "text": "t"}))
    with pytest.raises(PreferenceError, match="newer fixloop"):
        store.get("bad")
