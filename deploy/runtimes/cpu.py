"""What this machine's CPU can do, read from /proc/cpuinfo: the instruction-set flags that decide
which arithmetic is fast (VNNI for INT8, AVX512_BF16 and AMX for BF16), and which is exact. Elsewhere
(not Linux) the flags are unknown and nothing is assumed.

INT8 on x86 (ONNX Runtime's MLAS kernels, OpenVINO's oneDNN ones) multiplies uint8 activations by
int8 weights. With VNNI (or AMX) the products go straight into int32 sums: exact. Without VNNI the
kernels use `vpmaddubsw`, which adds each pair of products into an int16 with saturation: with 8-bit
weights a pair can reach 2 x 255 x 127 = 64,770 > 32,767, and the result depends on the CPU. With
7-bit weights (the toolkit's "cpu" INT8 form) a pair stays within 2 x 255 x 64 = 32,640: exact on
every x86 CPU (`int8_path`, `int8_saturation_note`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from toolkit.files import notice

# The flags that matter for inference on a CPU, as Linux names them.
RELEVANT_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")
BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # native BF16 arithmetic
VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")  # 8-bit dot products
SAFE_WEIGHT_BITS = 7  # uint8 x int8 pair sums fit an int16 for weights within [-64, 64]


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

    @property
    def int16_pair_sums(self) -> bool:
        """True where x86 INT8 kernels add pairs of uint8 x int8 products into saturating int16s
        (an x86 CPU without VNNI or AMX; see the module docstring)."""
        return bool(self.flags) and not self.vnni

    def int8_path(self) -> str:
        """How this CPU's INT8 kernels sum products, in words (printed beside INT8 figures)."""
        for flag in ("amx_int8", "avx512_vnni", "avx_vnni"):
            if flag in self.flags:
                return f"{'AMX' if flag.startswith('amx') else 'VNNI'} ({flag}): exact int32 sums"
        if self.int16_pair_sums:
            return f"no VNNI ({self.describe()}): int16 pair sums, exact for 7-bit weights only"
        return "unknown (the CPU's flags could not be read)"

    def describe(self) -> str:
        return ", ".join(self.flags) or "none of " + ", ".join(RELEVANT_FLAGS)


def int8_saturation_note(name: str, quantization: dict, features: CpuFeatures) -> str | None:
    """One line for an INT8 file (its `quantization` record) whose weights use the full 8-bit range,
    opened on a CPU whose INT8 kernels sum pairs in int16 (no VNNI): there its sums can saturate and
    it may classify worse than on a CPU with VNNI. None when the file or the CPU is safe. Files
    written before the record had "weight_bits" have 8-bit weights."""
    bits = quantization.get("weight_bits", 8)
    if not features.int16_pair_sums or not isinstance(bits, int) or bits <= SAFE_WEIGHT_BITS:
        return None
    if quantization.get("target") == "tensorrt":
        remedy = "it is TensorRT's form; for CPUs export with --int8-target cpu (7-bit weights, exact everywhere)"
    else:
        remedy = "re-export it with this toolkit's --int8-target cpu (7-bit weights, exact everywhere)"
    return (
        f"{name} has 8-bit INT8 weights and this CPU has no VNNI ({features.describe()}): its int16 pair sums "
        f"can saturate, so it may classify worse here than on a CPU with VNNI; {remedy}"
    )


def note_int8_saturation(runtime, features: CpuFeatures | None = None) -> None:
    """Say (`toolkit.files.notice`) `int8_saturation_note` for a CPU runtime's INT8 file, if it applies."""
    info = runtime.info
    if info is None or info.precision != "int8":
        return
    note = int8_saturation_note(runtime.path.name, info.quantization, features or CpuFeatures.probe())
    if note is not None:
        notice(note)
