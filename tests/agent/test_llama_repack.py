"""Weight repacking in llama.cpp: off on AMX CPUs (its kernels segfault there), else on."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.backends.llama_repack import model_params, repack_enabled
from agent.cpu import cpu_has_amx

AMX_FLAGS = "flags\t\t: fpu sse sse2 avx2 avx512f amx_bf16 avx512_fp16 amx_tile amx_int8\n"
PLAIN_FLAGS = "flags\t\t: fpu sse sse2 avx2 avx512f avx512_vnni\n"


def cpuinfo(tmp_path: Path, flags: str) -> Path:
    path = tmp_path / f"cpuinfo-{len(flags)}"
    path.write_text("processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor\n" + flags)
    return path


def test_amx_is_read_from_the_cpu_flags(tmp_path: Path) -> None:
    assert cpu_has_amx(cpuinfo(tmp_path, AMX_FLAGS))
    assert not cpu_has_amx(cpuinfo(tmp_path, PLAIN_FLAGS))
    assert not cpu_has_amx(tmp_path / "missing")  # not Linux: no AMX assumed


def test_repack_is_off_on_amx_unless_the_setting_says(tmp_path: Path) -> None:
    amx, plain = cpuinfo(tmp_path, AMX_FLAGS), cpuinfo(tmp_path, PLAIN_FLAGS)
    assert repack_enabled(None, amx) is False and repack_enabled(None, plain) is True
    assert repack_enabled(True, amx) is True and repack_enabled(False, plain) is False


def test_model_params_turn_extra_buffers_off_only_while_open() -> None:
    lib = pytest.importorskip("llama_cpp.llama_cpp")
    assert lib.llama_model_default_params().use_extra_bufts is True
    with model_params(repack=False):
        assert lib.llama_model_default_params().use_extra_bufts is False
    assert lib.llama_model_default_params().use_extra_bufts is True
    with model_params(repack=True):
        assert lib.llama_model_default_params().use_extra_bufts is True


@pytest.mark.slow
def test_the_backend_loads_without_extra_buffers_on_amx_and_generates(
    smollm_path: Path, tmp_path: Path
) -> None:
    """Before the fix every decode on this project's AMX machines ended in SIGSEGV."""
    from agent.backends import make_backend
    from agent.config import Settings

    backend = make_backend(Settings(model="smollm2-135m", n_ctx=1024, data_dir=tmp_path))
    assert backend.llm.model_params.use_extra_bufts is (not cpu_has_amx())
    out = backend.llm.create_completion("def add(a, b):", max_tokens=4, temperature=0.0)
    assert out["usage"]["completion_tokens"] > 0
