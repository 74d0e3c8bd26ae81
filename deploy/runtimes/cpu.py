"""What this machine's CPU can do, read from /proc/cpuinfo: on x86 its `flags` (VNNI for INT8,
AVX512_BF16 and AMX for BF16), on ARM (aarch64) its `Features` (the dot product, i8mm, SVE, BF16),
and which of its INT8 arithmetic is exact; the CPU's name (x86: `model name`; ARM: `CPU
implementer` and `CPU part`, e.g. Cortex-A76). Elsewhere, or where cpuinfo describes another
architecture than the one running (QEMU's user mode shows the host's), nothing is assumed.

INT8 on x86 (ONNX Runtime's MLAS kernels, OpenVINO's oneDNN ones) multiplies uint8 activations by
int8 weights. With VNNI (or AMX) the products go straight into int32 sums: exact. Without VNNI the
kernels use `vpmaddubsw`, which adds each pair of products into an int16 with saturation: with 8-bit
weights a pair can reach 2 x 255 x 127 = 64,770 > 32,767, and the result depends on the CPU. With
7-bit weights (the toolkit's "cpu" INT8 form) a pair stays within 2 x 255 x 64 = 32,640: exact on
every x86 CPU (`int8_path`, `int8_saturation_note`). ARM's kernels widen into int32 on every
ARMv8 CPU: with NEON's multiply-accumulates (ARMv8.0, a Cortex-A72), the dot product (`asimddp`,
ARMv8.2: a Cortex-A76, a Raspberry Pi 5) or the matrix multiply (`i8mm`, ARMv8.6): exact, and the
same logits on each (measured on emulated A72, A76 and `max`: docs/accuracy.md).
"""

from __future__ import annotations

import functools
import platform
from dataclasses import dataclass

from toolkit.files import notice

# The flags that matter for inference on a CPU, as Linux names them.
X86_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")
ARM_FLAGS = ("asimd", "asimddp", "i8mm", "sve", "sve2", "bf16", "asimdhp")
RELEVANT_FLAGS = X86_FLAGS + ARM_FLAGS
BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # native BF16 arithmetic (x86: what OpenVINO's BF16 runs on)
VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")  # 8-bit dot products
SAFE_WEIGHT_BITS = 7  # uint8 x int8 pair sums fit an int16 for weights within [-64, 64]
ARCHITECTURES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}
# Arm's own cores (CPU implementer 0x41) by CPU part, as Linux's cpuinfo gives them; NVIDIA's Carmel.
ARM_PARTS = {
    (0x41, 0xD03): "Cortex-A53", (0x41, 0xD04): "Cortex-A35", (0x41, 0xD05): "Cortex-A55",
    (0x41, 0xD07): "Cortex-A57", (0x41, 0xD08): "Cortex-A72", (0x41, 0xD09): "Cortex-A73",
    (0x41, 0xD0A): "Cortex-A75", (0x41, 0xD0B): "Cortex-A76", (0x41, 0xD0C): "Neoverse-N1",
    (0x41, 0xD0D): "Cortex-A77", (0x41, 0xD40): "Neoverse-V1", (0x41, 0xD41): "Cortex-A78",
    (0x41, 0xD42): "Cortex-A78AE", (0x41, 0xD44): "Cortex-X1", (0x41, 0xD46): "Cortex-A510",
    (0x41, 0xD47): "Cortex-A710", (0x41, 0xD48): "Cortex-X2", (0x41, 0xD49): "Neoverse-N2",
    (0x41, 0xD4B): "Cortex-A78C", (0x41, 0xD4F): "Neoverse-V2", (0x4E, 0x004): "NVIDIA Carmel",
}  # fmt: skip


def architecture() -> str:
    """ "x86_64", "aarch64", or what `platform.machine()` says for anything else."""
    machine = platform.machine().lower()
    return ARCHITECTURES.get(machine, machine)


@functools.lru_cache(maxsize=1)
def cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (empty where there is none)."""
    try:
        with open("/proc/cpuinfo") as info:
            return parse_cpuinfo(info.read())
    except OSError:
        return {}


def parse_cpuinfo(text: str) -> dict[str, str]:
    """The fields of cpuinfo's first processor (each key once: the first value)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, colon, value = line.partition(":")
        if colon and key.strip() and key.strip() not in fields:
            fields[key.strip()] = value.strip()
    return fields


def cpu_flags(fields: dict[str, str] | None = None, machine: str | None = None) -> frozenset[str]:
    """The CPU's flags: x86's `flags`, ARM's `Features`; none where cpuinfo is of another
    architecture than the one running."""
    fields = cpuinfo() if fields is None else fields
    key = {"x86_64": "flags", "aarch64": "Features"}.get(machine or architecture())
    return frozenset(fields.get(key, "").split()) if key else frozenset()


def cpu_model(fields: dict[str, str] | None = None, machine: str | None = None) -> str:
    """The CPU's name: x86's `model name`; on ARM its core (Cortex-A76 ...) from `CPU implementer`
    and `CPU part`, with the part's number where the table does not know it."""
    fields = cpuinfo() if fields is None else fields
    machine = machine or architecture()
    if machine == "x86_64" and fields.get("model name"):
        return fields["model name"]
    if machine == "aarch64" and "CPU part" in fields:
        try:
            key = (int(fields.get("CPU implementer", "0"), 0), int(fields["CPU part"], 0))
        except ValueError:
            key = (0, 0)
        return ARM_PARTS.get(key, f"ARM CPU (implementer {fields.get('CPU implementer')}, part {fields['CPU part']})")
    return platform.processor() or machine


@dataclass(frozen=True)
class CpuFeatures:
    """The relevant flags this CPU has (x86's or ARM's), its architecture, and what follows."""

    flags: tuple[str, ...]
    machine: str = "x86_64"

    @classmethod
    def probe(cls) -> CpuFeatures:
        machine = architecture()
        present = cpu_flags(machine=machine)
        return cls(tuple(flag for flag in RELEVANT_FLAGS if flag in present), machine)

    @classmethod
    def from_cpuinfo(cls, text: str, machine: str) -> CpuFeatures:
        """The features a cpuinfo text describes, for an `machine` ("x86_64", "aarch64")."""
        present = cpu_flags(parse_cpuinfo(text), machine)
        return cls(tuple(flag for flag in RELEVANT_FLAGS if flag in present), machine)

    @property
    def bf16(self) -> bool:
        """Native BF16 that OpenVINO computes in (x86's AVX512_BF16 or AMX)."""
        return self.machine == "x86_64" and any(flag in self.flags for flag in BF16_FLAGS)

    @property
    def vnni(self) -> bool:
        return self.machine == "x86_64" and any(flag in self.flags for flag in VNNI_FLAGS)

    @property
    def int16_pair_sums(self) -> bool:
        """True where x86 INT8 kernels add pairs of uint8 x int8 products into saturating int16s
        (an x86 CPU without VNNI or AMX; see the module docstring). Never on ARM."""
        return self.machine == "x86_64" and bool(self.flags) and not self.vnni

    def int8_path(self) -> str:
        """How this CPU's INT8 kernels sum products, in words (printed beside INT8 figures)."""
        if self.machine == "aarch64" and self.flags:
            for flag, family in (("i8mm", "8-bit matrix multiply"), ("asimddp", "dot product")):
                if flag in self.flags:
                    return f"ARM {family} ({flag}): exact int32 sums"
            return "ARM NEON (asimd, no dot product): exact int32 sums"
        for flag in ("amx_int8", "avx512_vnni", "avx_vnni"):
            if flag in self.flags:
                return f"{'AMX' if flag.startswith('amx') else 'VNNI'} ({flag}): exact int32 sums"
        if self.int16_pair_sums:
            return f"no VNNI ({self.describe()}): int16 pair sums, exact for 7-bit weights only"
        return "unknown (the CPU's flags could not be read)"

    def describe(self) -> str:
        known = X86_FLAGS if self.machine == "x86_64" else ARM_FLAGS if self.machine == "aarch64" else RELEVANT_FLAGS
        return ", ".join(self.flags) or "none of " + ", ".join(known)


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
