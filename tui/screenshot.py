"""Take the README's screenshot: a real episode in the TUI, saved as Textual's own SVG.

    .venv/bin/python -m tui.screenshot --model qwen2.5-coder-1.5b --out docs/screenshot.svg

The task is typed into the real app, the model works through it (repairing when
its first attempt fails), and the screen is saved once the episode is ready for
review. Sessions go to a temporary directory, not to the project's log.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from textual import events

from agent.config import load_settings
from tui.app import FixloopApp

TASK = """Write a function nearest(x) that rounds a number to the nearest integer.
assert nearest(1.4) == 1
assert nearest(2.5) == 3
assert nearest(0.5) == 1"""


async def capture(app: FixloopApp, out: Path, size: tuple[int, int], timeout: float) -> str:
    async with app.run_test(size=size) as pilot:
        chat = app.screen
        deadline = time.monotonic() + timeout
        while not getattr(chat, "model_ready", False):
            if time.monotonic() > deadline:
                raise TimeoutError("the model did not load")
            await pilot.pause(0.2)
        app.post_message(events.Paste(TASK))
        await pilot.pause(0.2)
        await pilot.press("enter")
        await pilot.pause(0.5)
        while chat.busy:  # type: ignore[attr-defined]
            if time.monotonic() > deadline:
                raise TimeoutError("the episode did not finish in time")
            await pilot.pause(0.5)
        await pilot.pause(0.5)
        app.save_screenshot(filename=out.name, path=str(out.parent))
        return str(chat.status.state)  # type: ignore[attr-defined]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="registered model (default: configured)")
    parser.add_argument("--out", type=Path, default=Path("docs/screenshot.svg"))
    parser.add_argument("--width", type=int, default=100)
    parser.add_argument("--height", type=int, default=36)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--threads", type=int, default=None, help="llama.cpp threads")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fixloop-shot-") as tmp:
        overrides = {"model": args.model, "sessions_dir": Path(tmp), "n_threads": args.threads}
        settings, _ = load_settings(overrides)
        app = FixloopApp(settings, blink=False)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        state = asyncio.run(capture(app, args.out, (args.width, args.height), args.timeout))
    print(f"saved {args.out} (episode state: {state})")


if __name__ == "__main__":
    main()
