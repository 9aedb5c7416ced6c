"""Model backends behind one small Protocol, and `make_backend` that picks one from settings.

Choice, first match wins:
1. `settings.base_url` -> an OpenAI-compatible HTTP server;
2. `settings.model` is a directory with config.json -> transformers (with the
   peft adapter in `settings.adapter`, when that is a peft directory);
3. `settings.model` is a path to a .gguf file -> llama.cpp on that file;
4. otherwise `settings.model` is a registry name -> its verified GGUF -> llama.cpp
   (with the registry's or the settings' GGUF LoRA adapter).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from agent.backends.base import Backend, BackendError, StreamChunk
from agent.hashing import sha256_file

if TYPE_CHECKING:
    from agent.config import Settings

__all__ = ["Backend", "BackendError", "StreamChunk", "file_sha256", "make_backend"]

_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path) -> str:
    """sha256 of a (small) file such as a LoRA adapter, memoized by path, size and mtime."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _SHA_CACHE:
        _SHA_CACHE[key] = sha256_file(path)
    return _SHA_CACHE[key]


def make_backend(settings: Settings) -> Backend:
    """The backend the settings select; BackendError with a fix when it cannot start."""
    if settings.base_url:
        from agent.backends.openai_http import OpenAIBackend

        key = settings.api_key.get_secret_value() if settings.api_key else None
        return OpenAIBackend(
            settings.base_url,
            model=settings.model,
            api_key=key,
            n_ctx=settings.n_ctx,
            cache_prompt=settings.prompt_cache,
        )
    as_path = Path(settings.model).expanduser()
    if as_path.is_dir():
        from agent.backends.transformers_backend import TransformersBackend, is_checkpoint_dir

        if not is_checkpoint_dir(as_path):
            raise BackendError(
                f"{as_path} is a directory but not a Hugging Face checkpoint (no config.json); "
                "give a checkpoint directory, a .gguf file or a registered model name"
            )
        adapter = settings.adapter if settings.adapter and settings.adapter.is_dir() else None
        if settings.adapter and adapter is None:
            raise BackendError(
                f"--adapter {settings.adapter} must be a peft adapter directory for a "
                "transformers checkpoint"
            )
        return TransformersBackend(as_path, adapter=adapter, n_ctx=settings.n_ctx)
    from agent.backends.llama_cpp import LlamaCppBackend

    adapter_sha: str | None = None
    if as_path.suffix == ".gguf":
        if not as_path.is_file():
            raise BackendError(f"model file {as_path} does not exist")
        path, name, sha, adapter = as_path, as_path.stem, None, settings.adapter
        prefix = ""
    else:
        from agent.models import ModelError, Registry, ensure_model
        from agent.models.registry import UnknownModelError

        try:
            spec = Registry(settings.data_dir).get(settings.model)
            path = ensure_model(spec, settings.cache_dir)
        except (ModelError, UnknownModelError) as exc:
            raise BackendError(str(exc)) from exc
        name, sha, adapter = spec.name, spec.sha256, settings.adapter or spec.adapter
        if adapter == spec.adapter:
            adapter_sha = spec.adapter_sha256  # verified by ensure_model: not hashed twice
        prefix = spec.lineage.get("inference_prefix") or ""
    if adapter is not None and adapter.is_dir():
        raise BackendError(
            f"--adapter {adapter} is a directory; llama.cpp needs a GGUF LoRA file "
            "(convert it with the trainer's export, or run the checkpoint with the "
            "transformers backend)"
        )
    if adapter_sha is None and adapter is not None and adapter.is_file():
        adapter_sha = file_sha256(adapter)
    return LlamaCppBackend(
        path,
        name=name,
        sha256=sha,
        n_ctx=settings.n_ctx,
        adapter=adapter,
        adapter_sha256=adapter_sha,
        n_threads=settings.n_threads,
        n_gpu_layers=settings.n_gpu_layers,
        llama_repack=settings.llama_repack,
        prompt_prefix=prefix,
        prompt_cache=settings.prompt_cache,
    )
