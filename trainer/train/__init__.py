"""Fine-tuning: `fixloop train`, on TRL's trainers (see :mod:`trainer.train.loop`).

    fixloop data build                                   # sessions -> DATA_DIR/datasets
    fixloop train --method leti --base qwen2.5-coder-1.5b  # -> runs/<timestamp>-leti/
    accelerate launch -m fixloop train --method leti     # the same, on several GPUs
    fixloop train --resume runs/<timestamp>-leti         # continue from the last checkpoint

Methods: sft (chat `messages`: loss on the last assistant turn), leti (reward token +
feedback, LM loss on all of it, LeTI's tokens added with only their embedding rows trained
beside the LoRA), ilf (prompt/completion, loss on the refinement): TRL's SFTTrainer; dpo
(prompt/chosen/rejected): DPOTrainer; kto (prompt/completion/label): KTOTrainer. LoRA by
default (`--full` trains every weight); bf16 where the GPU or CPU has it natively; the
reference model of DPO/KTO is the base with the adapter switched off. torch, transformers,
peft and trl are imported only when a run starts.
"""
