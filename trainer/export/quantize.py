"""Re-quantize a GGUF with llama.cpp (`llama_model_quantize`)."""

from __future__ import annotations

import ctypes
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from agent.errors import FixloopError

# name -> llama_ftype (llama.h): LLAMA_FTYPE_MOSTLY_Q8_0 = 7, LLAMA_FTYPE_MOSTLY_Q4_K_M = 15
QUANT_TYPES: dict[str, int] = {"Q4_K_M": 15, "Q8_0": 7}
DEFAULT_QUANT = "Q4_K_M"


class QuantizeError(FixloopError, RuntimeError):
    pass


def check_quant(quant: str) -> str:
    q = quant.upper()
    if q not in QUANT_TYPES:
        raise QuantizeError(
            f"unknown quantization {quant!r}; choose one of {', '.join(QUANT_TYPES)}."
        )
    return q


def quantize(src: Path, dst: Path, quant: str = DEFAULT_QUANT, *, threads: int = 0) -> Path:
    """Write `dst` as `src` quantized to `quant`.

    Tensors whose rows do not fit the type's block size fall back to a nearby type
    (llama.cpp decides and logs it), which only matters for toy models.
    """
    import llama_cpp

    q = check_quant(quant)
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = QUANT_TYPES[q]
    params.nthread = threads
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.part")
    # llama.cpp prints a line per tensor on the C stderr: keep it for the error message only.
    with tempfile.TemporaryFile() as log, _c_stderr_to(log):
        rc = llama_cpp.llama_model_quantize(
            str(src).encode(), str(tmp).encode(), ctypes.byref(params)
        )
        log.seek(0)
        output = log.read().decode("utf-8", "replace")
    if rc != 0 or not tmp.is_file():
        tmp.unlink(missing_ok=True)
        tail = "\n".join(output.strip().splitlines()[-10:])
        raise QuantizeError(f"llama_model_quantize({src.name} -> {q}) failed ({rc}):\n{tail}")
    tmp.replace(dst)
    return dst


@contextmanager
def _c_stderr_to(sink: BinaryIO) -> Iterator[None]:
    """Point file descriptor 2 (what C code writes to) at `sink` for the duration."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        os.dup2(sink.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
