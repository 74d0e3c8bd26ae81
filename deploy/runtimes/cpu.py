"""What this machine's CPU can do, read from /proc/cpuinfo: the instruction-set flags that decide
which arithmetic is fast (VNNI for INT8, AVX512_BF16 and AMX for BF16). Elsewhere (not Linux) the
flags are unknown and nothing is assumed."""

from __future__ import annotations

import functools
from dataclasses import dataclass

# The flags that matter for inference on a CPU, as Linux names them.
RELEVANT_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")
BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # native BF16 arithmetic
VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")  # 8-bit dot products


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's flags from /proc/cpuinfo (empty where there is none)."""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


@dataclass(frozen=True)
class CpuFeatures:
    """The relevant flags this CPU has, and what follows from them."""

    flags: tuple[str, ...]

    @classmethod
    def probe(cls) -> CpuFeatures:
        return cls(tuple(flag for flag in RELEVANT_FLAGS if flag in cpu_flags()))

    @property
    def bf16(self) -> bool:
        return any(flag in self.flags for flag in BF16_FLAGS)

    @property
    def vnni(self) -> bool:
        return any(flag in self.flags for flag in VNNI_FLAGS)

    def describe(self) -> str:
        return ", ".join(self.flags) or "none of " + ", ".join(RELEVANT_FLAGS)
