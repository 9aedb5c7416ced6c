"""A finished training run -> GGUF (merged or a LoRA adapter) -> quantized -> checked -> registered.

Heavy libraries (torch, transformers, peft, llama_cpp) are imported inside functions.
"""
