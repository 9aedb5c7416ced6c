"""Model registry and provisioning: which GGUF files fixloop knows and how to get them."""

from agent.models.provision import (
    HashMismatchError,
    MissingPackageError,
    ModelError,
    ensure_model,
    verify_model,
)
from agent.models.registry import ModelSpec, PartSource, Registry, builtin_models

__all__ = [
    "HashMismatchError",
    "MissingPackageError",
    "ModelError",
    "ModelSpec",
    "PartSource",
    "Registry",
    "builtin_models",
    "ensure_model",
    "verify_model",
]
