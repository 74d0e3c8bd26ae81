"""The CPU as the toolkit sees it, on x86 and on ARM (issue 37): what cpuinfo says (x86's `flags`,
ARM's `Features`), the INT8 path named in the CPU's own words, the CPU's name, and nothing of x86
said on ARM (no VNNI, no saturation note). The ARM cpuinfo files are tests/data/cpuinfo's (the board
check uses them under emulation, tests/deploy/test_board_aarch64.py)."""

from pathlib import Path

import pytest

from deploy.runtimes.cpu import CpuFeatures, cpu_model, int8_saturation_note, parse_cpuinfo

CPUINFO = Path(__file__).resolve().parents[1] / "data" / "cpuinfo"
X86_AVX2 = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 avx avx2 fma\n"
X86_VNNI = "processor\t: 0\nmodel name\t: AMD EPYC 9654\nflags\t\t: fpu avx2 avx512f avx512_vnni avx512_bf16\n"


@pytest.mark.parametrize(
    "source, machine, model, path",
    [
        ("cortex-a76.txt", "aarch64", "Cortex-A76", "ARM dot product (asimddp): exact int32 sums"),
        ("cortex-a72.txt", "aarch64", "Cortex-A72", "ARM NEON (asimd, no dot product): exact int32 sums"),
        (X86_AVX2, "x86_64", "AMD EPYC", "no VNNI (avx2): int16 pair sums, exact for 7-bit weights only"),
        (X86_VNNI, "x86_64", "AMD EPYC 9654", "VNNI (avx512_vnni): exact int32 sums"),
    ],
)
def test_the_cpu_is_read_in_its_own_words(source, machine, model, path):
    text = (CPUINFO / source).read_text() if source.endswith(".txt") else source
    features = CpuFeatures.from_cpuinfo(text, machine)
    assert features.int8_path() == path and cpu_model(parse_cpuinfo(text), machine) == model
    if machine == "aarch64":
        assert not features.vnni and not features.bf16 and not features.int16_pair_sums
        eight_bit = {"weight_bits": 8, "target": "cpu"}  # what would make x86 without VNNI saturate
        assert int8_saturation_note("m.onnx", eight_bit, features) is None


def test_an_i8mm_core_names_its_matrix_multiply_and_an_unknown_part_its_number():
    text = (
        "processor\t: 0\nFeatures\t: fp asimd asimddp i8mm sve sve2 bf16\nCPU implementer\t: 0x41\nCPU part\t: 0xd99\n"
    )
    features = CpuFeatures.from_cpuinfo(text, "aarch64")
    assert features.int8_path() == "ARM 8-bit matrix multiply (i8mm): exact int32 sums"
    assert cpu_model(parse_cpuinfo(text), "aarch64") == "ARM CPU (implementer 0x41, part 0xd99)"


def test_cpuinfo_of_another_architecture_says_nothing():
    """Under QEMU's user mode an aarch64 process reads the host's x86 cpuinfo: its flags are not
    the emulated CPU's, so nothing is assumed (the board check writes an ARM one)."""
    features = CpuFeatures.from_cpuinfo(X86_VNNI, "aarch64")
    assert features.flags == () and features.int8_path().startswith("unknown") and not features.vnni
    assert CpuFeatures.from_cpuinfo((CPUINFO / "cortex-a76.txt").read_text(), "x86_64").flags == ()
