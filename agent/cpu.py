"""What this machine's CPU is and can compute, read from /proc/cpuinfo (Linux).

Two decisions rest on it: whether llama.cpp may repack weights (not on AMX CPUs, whose
kernels crash: `agent.backends.llama_repack`) and whether training runs in bf16 on the CPU
(where it has native bf16 dot products: `trainer.train.loop`). Elsewhere (macOS, Windows) the
file is absent, the fields are empty and neither feature is assumed.
"""

from __future__ import annotations

from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
# x86's AVX512_BF16 and AMX-BF16, ARM's BF16 (FEAT_BF16): instructions that multiply bf16.
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


def cpu_fields(cpuinfo: Path = CPUINFO) -> dict[str, str]:
    """The first core's fields of /proc/cpuinfo ("model name", "flags", ...); {} where absent."""
    fields: dict[str, str] = {}
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return fields
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


def cpu_flags(cpuinfo: Path = CPUINFO) -> set[str]:
    """The CPU's feature flags (x86 "flags", ARM "Features"); empty where unknown."""
    fields = cpu_fields(cpuinfo)
    return set((fields.get("flags") or fields.get("Features") or "").split())


def cpu_has_amx(cpuinfo: Path = CPUINFO) -> bool:
    """True when the CPU flags list AMX (`amx_int8` or `amx_bf16`)."""
    return bool(cpu_flags(cpuinfo) & {"amx_int8", "amx_bf16"})


def cpu_has_bf16(cpuinfo: Path = CPUINFO) -> bool:
    """True when the CPU multiplies bf16 natively (AVX512_BF16, AMX-BF16 or ARM BF16); without
    these, torch emulates bf16 on the CPU and fp32 is the faster choice."""
    return bool(cpu_flags(cpuinfo) & BF16_FLAGS)
