"""Fine-tuning: `fixloop train` (see :mod:`trainer.train.loop`).

    fixloop data build                                   # sessions -> DATA_DIR/datasets
    fixloop train --method leti --base qwen2.5-coder-1.5b  # -> runs/<timestamp>-leti/
    accelerate launch -m fixloop train --method leti     # the same, on several GPUs
    fixloop train --resume runs/<timestamp>-leti         # continue from the last checkpoint

Methods: sft (chat `messages`), leti (reward token + feedback text, LM loss on all of it,
with LeTI's special tokens added), ilf (prompt/completion, loss on the refinement), dpo
(prompt/chosen/rejected), kto (prompt/completion/label). LoRA by default (`--full` trains
every weight); bf16 on CUDA; the reference model of DPO/KTO is the base with the adapter
switched off. torch, transformers and peft are imported only when a run starts.
"""
