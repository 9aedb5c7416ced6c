"""Whether llama.cpp may repack model weights into its extra buffer types (AMX, CPU_REPACK).

At load time llama.cpp moves weights into "extra" CPU buffer types whose layouts suit the
machine's matrix kernels. On CPUs that advertise Intel AMX that means the AMX buffer, and
ggml's AMX kernels segfault in the first decode on some of them (llama.cpp issue #20824,
unfixed; seen here on Xeon machines with `amx_int8`, llama-cpp-python 0.3.36, on both the
development machine and CI: every generation crashed the process). So repacking is off by
default on AMX CPUs and on elsewhere; `llama_repack = true` (or `FIXLOOP_LLAMA_REPACK=1`)
turns it back on where the kernels work.

llama-cpp-python's `Llama` has no argument for it; `model_params(repack=False)` sets the
model parameter `use_extra_bufts` while a model loads (the same as llama-server's
`--no-repack`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from agent.cpu import CPUINFO, cpu_has_amx

_PATCH_LOCK = threading.Lock()


def repack_enabled(setting: bool | None, cpuinfo: Path = CPUINFO) -> bool:
    """The setting when given; otherwise on, except on AMX CPUs."""
    if setting is not None:
        return setting
    return not cpu_has_amx(cpuinfo)


def repack_from_environment() -> bool:
    """`repack_enabled` for the effective settings (flags aside): file and FIXLOOP_* env."""
    from agent.config import load_settings

    settings, _ = load_settings()
    return repack_enabled(settings.llama_repack)


@contextmanager
def model_params(*, repack: bool) -> Iterator[None]:
    """While it is open, models loaded by llama-cpp-python use `repack` for extra buffers."""
    if repack:
        yield
        return
    import llama_cpp.llama_cpp as lib

    with _PATCH_LOCK:
        default = lib.llama_model_default_params

        def without_extra_buffers() -> object:
            params = default()
            params.use_extra_bufts = False
            return params

        lib.llama_model_default_params = without_extra_buffers
        try:
            yield
        finally:
            lib.llama_model_default_params = default
