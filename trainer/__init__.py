"""fixloop's offline trainer: sessions -> datasets -> fine-tune -> export -> evaluate -> promote.

It reads session logs only through the agent's schema (:mod:`agent.events`).
Importing this package is cheap: nothing here imports torch at import time; the
training modules import it when they run.
"""
