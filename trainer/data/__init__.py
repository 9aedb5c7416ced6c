"""Compile logged sessions into feedback-tuning datasets (LeTI, ILF, SFT, DPO, KTO, RLEF).

- :mod:`trainer.data.episodes`: read a log and rebuild its attempts, feedback and user actions.
- :mod:`trainer.data.formats`: one row builder per output format.
- :mod:`trainer.data.hygiene`: evaluation-split guard, near-duplicate removal, token budget.
- :mod:`trainer.data.build`: the whole build, writing the JSONL files and `manifest.json`.
- :mod:`trainer.data.summary`: a table and a bar chart of what was built.
"""
