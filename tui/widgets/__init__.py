"""Widgets the screens share: transcript, attempt results, diffs, prompt, status bar."""
