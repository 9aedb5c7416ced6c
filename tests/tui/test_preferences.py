"""`/prefer TEXT` and the palette's "Add a standing preference": synthesis in a worker with
the scripted model, the verifiers really sandboxed, then approve / edit / discard."""

from __future__ import annotations

from textual.widgets import Button, Static

from agent.preferences import PreferenceStore
from tests.agent.test_preferences_synth import AST_CHECK, BREAKS, FOLLOWS, SUBSTRING, TEXT, reply
from tests.tui.conftest import GatedBackend, paste, plain, scripted_app, wait_until
from tui.app import FixloopApp
from tui.screens.edit import EditScreen
from tui.screens.prefer import PreferenceReview, PreferenceTextPrompt
from tui.widgets.transcript import Notice

ALWAYS = "def evaluate(code: str) -> bool:\n    return True\n"
PREF_ID = "use-pathlib-not-os-path"


def replies() -> list[str]:
    """8 samples: three distinct verifiers (one too inaccurate) and 12 distinct examples,
    then the back-translation and the judge's answer for each of the two that survive."""
    good = [(c, True) for c in FOLLOWS]
    bad = [(c, False) for c in BREAKS]
    authors = [
        reply(AST_CHECK, good[:3] + bad[:3]),
        reply(SUBSTRING, good[3:] + bad[3:]),
        reply(ALWAYS, []),
        *[reply(AST_CHECK, []) for _ in range(5)],  # the same function again: not rerun
    ]
    judged = ["The code must not use os.path.", "yes", "The code has no 'os.path' text.", "yes"]
    return [*authors, *judged]


def notes(chat) -> list[str]:
    return [plain(n) for n in chat.transcript.query(Notice)]


async def _synthesize(pilot, chat, command: str = f"/prefer {TEXT}") -> PreferenceReview:
    await wait_until(pilot, lambda: chat.model_ready, what="the model to load")
    await paste(pilot, command)
    await pilot.press("enter")
    await wait_until(
        pilot,
        lambda: isinstance(pilot.app.screen, PreferenceReview) and pilot.app.screen.query("Button"),
        timeout=60,
        what="the review of the synthesized verifier",
    )
    assert not chat.busy and chat.session is None  # a preference never starts a task
    return pilot.app.screen


async def test_prefer_synthesizes_then_approve_stores_it(settings) -> None:
    app, backend = scripted_app(settings, replies())
    async with app.run_test(size=(100, 40)) as pilot:
        chat = app.screen
        review = await _synthesize(pilot, chat)
        assert review.source == AST_CHECK
        shown = plain(review.query_one("#prefer-yield", Static))
        assert "3 verifier(s) from 8 sample(s): 2 kept (yield 67%)" in shown
        assert "12 distinct, 12 kept" in shown
        cases = plain(review.query_one("#prefer-cases", Static))
        assert cases.count("[follows ] ✓") == 6 and cases.count("[violates] ✓") == 6
        candidates = plain(review.query_one("#prefer-candidates", Static))
        assert "dropped at accuracy" in candidates
        await pilot.press("a")
        await wait_until(pilot, lambda: chat.status.state == "preference stored")
        assert app.screen is chat
        assert any(f"stored preference {PREF_ID} (version 1, active)" in n for n in notes(chat))
        await paste(pilot, "/prefs")
        await pilot.press("enter")
        await wait_until(pilot, lambda: any("standing preferences (1)" in n for n in notes(chat)))
        assert any(f"{PREF_ID}  active  v1  12 case(s)  {TEXT}" in n for n in notes(chat))
    assert len(backend.calls) == 12  # 8 samples + 2 x (back-translation, judge)
    pref = PreferenceStore.for_data_dir(settings.data_dir).get(PREF_ID)
    assert pref.text == TEXT and pref.active
    assert pref.current.verifier == AST_CHECK and pref.current.source == "synthesized"
    assert len(pref.current.cases) == 12 and pref.current.report["functions_kept"] == 2


async def test_edit_is_rechecked_on_the_cases_then_stored_as_edited(settings) -> None:
    app, _ = scripted_app(settings, replies())
    async with app.run_test(size=(100, 40)) as pilot:
        review = await _synthesize(pilot, app.screen)
        await pilot.press("e")
        editor = app.screen
        assert isinstance(editor, EditScreen) and "re-checks it on the cases" in plain(
            editor.query_one("#edit-title", Static)
        )
        editor.editor.load_text(SUBSTRING)
        await pilot.press("ctrl+s")
        assert app.screen is review
        check = review.query_one("#prefer-check", Static)
        await wait_until(pilot, lambda: review.edited and not review.checking, timeout=30)
        assert "accuracy on 12 case(s): 92%" in plain(check)
        assert "✗ verifier said False" in plain(review.query_one("#prefer-cases", Static))
        await pilot.press("a")
        await wait_until(pilot, lambda: app.screen.status.state == "preference stored")
    current = PreferenceStore.for_data_dir(settings.data_dir).get(PREF_ID).current
    assert current.verifier == SUBSTRING and current.source == "edited"


async def test_discard_stores_nothing(settings) -> None:
    app, _ = scripted_app(settings, replies())
    async with app.run_test(size=(100, 40)) as pilot:
        chat = app.screen
        review = await _synthesize(pilot, chat)
        # Under load the click can come before the button is laid out, and then misses.
        button = review.query_one("#discard", Button)
        await wait_until(pilot, lambda: button.region.area > 0, what="the button's layout")
        await pilot.click("#discard")
        await wait_until(pilot, lambda: chat.status.state == "discarded")
        assert app.screen is chat
        assert "discarded: the preference was not stored" in notes(chat)
    assert PreferenceStore.for_data_dir(settings.data_dir).all() == []


async def test_no_surviving_verifier_says_why_and_stores_nothing(settings) -> None:
    app, _ = scripted_app(settings, ["no code here"] * 8)
    async with app.run_test(size=(100, 40)) as pilot:
        chat = app.screen
        await wait_until(pilot, lambda: chat.model_ready)
        await paste(pilot, f"/prefer {TEXT}")
        await pilot.press("enter")
        await wait_until(pilot, lambda: chat.status.state == "no verifier")
        said = notes(chat)[-1]
        assert said.startswith(f"no verifier for {TEXT!r}: too little to cross-validate")
        assert said.endswith("nothing stored") and not chat.busy
    assert PreferenceStore.for_data_dir(settings.data_dir).all() == []


async def test_bad_input_and_no_model_are_one_line_errors(settings) -> None:
    app, backend = scripted_app(settings, [])
    async with app.run_test(size=(100, 40)) as pilot:
        chat = app.screen
        await wait_until(pilot, lambda: chat.model_ready)
        await paste(pilot, "/prefer")
        await pilot.press("enter")
        await wait_until(pilot, lambda: notes(chat))
        assert notes(chat) == [
            "/prefer needs the preference text, e.g. /prefer use pathlib, not os.path"
        ]
        # The palette entry asks for the text; an empty answer gets the same line.
        titles = {c.title: c for c in app.get_system_commands(chat)}
        assert "Standing preferences" in titles
        titles["Add a standing preference"].callback()
        await wait_until(pilot, lambda: isinstance(app.screen, PreferenceTextPrompt))
        await pilot.press("enter")
        await wait_until(pilot, lambda: len(notes(chat)) == 2)
        assert notes(chat)[1] == notes(chat)[0] and app.screen is chat
        await paste(pilot, "/prefs")
        await pilot.press("enter")
        await wait_until(pilot, lambda: len(notes(chat)) == 3)
        assert notes(chat)[2].startswith("no standing preferences yet: /prefer ")
    assert backend.calls == [] and chat.session is None


async def test_prefer_without_a_model_names_the_fix(settings) -> None:
    def broken(_settings):
        raise RuntimeError("no such model")

    app = FixloopApp(settings, backend_factory=broken, blink=False)
    async with app.run_test(size=(100, 40)) as pilot:
        chat = app.screen
        await wait_until(pilot, lambda: chat.model_failed)
        await paste(pilot, f"/prefer {TEXT}")
        await pilot.press("enter")
        await wait_until(pilot, lambda: len(notes(chat)) == 2)
        assert notes(chat)[-1] == (
            "cannot add the preference: no model is loaded (it failed to load): pick one with "
            "ctrl+l, then /prefer again"
        )
        assert not chat.busy


async def test_escape_cancels_the_synthesis_after_the_current_reply(settings) -> None:
    backend = GatedBackend(replies(), gate_after=40)
    app = FixloopApp(settings, backend_factory=lambda _s: backend, blink=False)
    async with app.run_test(size=(100, 40)) as pilot:
        chat = app.screen
        await wait_until(pilot, lambda: chat.model_ready)
        await paste(pilot, f"/prefer {TEXT}")
        await pilot.press("enter")
        await wait_until(pilot, lambda: len(backend.calls) == 1, what="the first sample")
        assert chat.busy and chat.status.state.startswith("preference: writing verifiers")
        await pilot.press("escape")
        assert chat.status.state == "cancelling"
        backend.gate.set()
        await wait_until(pilot, lambda: not chat.busy, timeout=10, what="control back")
        assert chat.status.state == "cancelled"
        assert notes(chat)[-1] == "preference cancelled: nothing stored"
        assert len(backend.calls) == 1 and app.screen is chat
    assert PreferenceStore.for_data_dir(settings.data_dir).all() == []
