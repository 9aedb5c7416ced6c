"""The CPU's features, read from /proc/cpuinfo: AMX (llama.cpp's repacking) and bf16 (training)."""

from __future__ import annotations

from pathlib import Path

from agent.cpu import cpu_flags, cpu_has_amx, cpu_has_bf16

SAPPHIRE_RAPIDS = "flags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8\n"
ZEN4 = "flags\t\t: fpu avx2 avx512f avx512_vnni avx512_bf16\n"
ZEN3 = "flags\t\t: fpu sse2 avx2 fma\n"
NEOVERSE_V1 = "Features\t: fp asimd sve bf16 i8mm\n"


def cpuinfo(tmp_path: Path, flags: str) -> Path:
    path = tmp_path / f"cpuinfo-{abs(hash(flags))}"
    key = flags.split(":")[0]  # the second core lists its own, as on a real machine
    path.write_text(f"processor\t: 0\n{flags}processor\t: 1\n{key}: other core\n")
    return path


def test_flags_are_the_first_cores_on_x86_and_arm(tmp_path: Path) -> None:
    assert "amx_tile" in cpu_flags(cpuinfo(tmp_path, SAPPHIRE_RAPIDS))
    assert "other" not in cpu_flags(cpuinfo(tmp_path, SAPPHIRE_RAPIDS))
    assert cpu_flags(cpuinfo(tmp_path, NEOVERSE_V1)) == {"fp", "asimd", "sve", "bf16", "i8mm"}
    assert cpu_flags(tmp_path / "missing") == set()


def test_bf16_needs_native_instructions(tmp_path: Path) -> None:
    assert cpu_has_bf16(cpuinfo(tmp_path, SAPPHIRE_RAPIDS))
    assert cpu_has_bf16(cpuinfo(tmp_path, ZEN4))  # AVX512_BF16 without AMX
    assert cpu_has_bf16(cpuinfo(tmp_path, NEOVERSE_V1))
    assert not cpu_has_bf16(cpuinfo(tmp_path, ZEN3))  # torch would emulate it
    assert not cpu_has_bf16(tmp_path / "missing")
    assert cpu_has_amx(cpuinfo(tmp_path, SAPPHIRE_RAPIDS))
    assert not cpu_has_amx(cpuinfo(tmp_path, ZEN4))
