"""The int8 backend-selection rule and the native-or-emulated rule (pure functions: no torch needed)."""

import subprocess
import sys

import pytest

from joulegrid import precision as P
from joulegrid import probes

SPR = frozenset({"avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_int8"})
CASCADE_LAKE = frozenset({"avx2", "avx512f", "avx512_vnni"})
ALDER_LAKE = frozenset({"avx2", "avx_vnni"})
EPYC_AVX2 = frozenset({"avx2"})


@pytest.mark.parametrize(
    "device,flags,arch,backend",
    [
        ("cuda", EPYC_AVX2, "x86_64", "torchao"),  # the GPU decides, not the host CPU
        ("cpu", SPR, "x86_64", "onednn"),  # AMX int8
        ("cpu", CASCADE_LAKE, "x86_64", "onednn"),  # AVX-512 VNNI
        ("cpu", ALDER_LAKE, "x86_64", "x86"),  # AVX-VNNI only (256-bit): torch's x86 engine
        ("cpu", EPYC_AVX2, "x86_64", "x86"),  # no VNNI: fbgemm kernels via the x86 engine
        ("cpu", frozenset(), "AMD64", "x86"),
        ("cpu", None, "x86_64", "x86"),  # flags unknown: the safe x86 choice
        ("cpu", frozenset({"asimddp", "i8mm"}), "aarch64", "qnnpack"),
    ],
)
def test_backend_selection_rule(device, flags, arch, backend):
    chosen, why = P.choose_int8(device, flags, arch)
    assert chosen == backend and why
    if backend == "onednn":
        assert all(f in why for f in sorted(flags & {"amx_int8", "avx512_vnni"}))


def test_backend_rule_refuses_unknown_architectures_with_the_fix():
    with pytest.raises(P.Unsupported, match="precision_options.int8.backend"):
        P.choose_int8("cpu", frozenset(), "riscv64")


def test_resolve_pinned_and_auto_and_scheme():
    p = P.get("int8", "infer", {"backend": "torchao"})
    assert p.resolve("cpu", SPR, "x86_64")[:2] == ("torchao", "dynamic") and p.backend_pinned is True
    p = P.get("int8", "infer")
    assert p.resolve("cpu", EPYC_AVX2, "x86_64")[:2] == ("x86", "static") and p.backend_pinned is False
    assert p.resolve("cuda", SPR, "x86_64")[:2] == ("torchao", "dynamic")
    p = P.get("int8", "infer", {"scheme": "dynamic"})
    assert p.resolve("cpu", SPR, "x86_64")[:2] == ("onednn", "dynamic")
    with pytest.raises(P.Unsupported, match="no static scheme"):
        P.get("int8", "infer", {"backend": "torchao", "scheme": "static"}).resolve("cpu", SPR, "x86_64")


@pytest.mark.parametrize(
    "precision,device,flags,arch,cc,native",
    [
        ("fp32", "cpu", EPYC_AVX2, "x86_64", None, True),
        ("fp64", "cuda", None, "x86_64", "7.5", True),
        ("bf16", "cpu", EPYC_AVX2, "x86_64", None, False),
        ("bf16", "cpu", SPR, "x86_64", None, True),
        ("bf16", "cpu", frozenset({"avx512_bf16"}), "x86_64", None, True),
        ("fp16", "cpu", CASCADE_LAKE, "x86_64", None, False),
        ("fp16_noscaler", "cpu", SPR, "x86_64", None, True),
        ("int8", "cpu", EPYC_AVX2, "x86_64", None, False),
        ("int8", "cpu", ALDER_LAKE, "x86_64", None, True),
        ("int8", "cpu", CASCADE_LAKE, "x86_64", None, True),
        ("bf16", "cpu", None, "x86_64", None, None),  # flags unknown
        ("bf16", "cpu", frozenset({"bf16"}), "aarch64", None, True),
        ("fp16", "cpu", frozenset({"asimddp"}), "aarch64", None, False),
        ("bf16", "cuda", None, "x86_64", "7.5", False),  # T4
        ("fp16", "cuda", None, "x86_64", "7.5", True),
        ("int8", "cuda", None, "x86_64", "7.0", False),  # V100: no int8 Tensor Cores
        ("int8", "cuda", None, "x86_64", "7.5", True),
        ("bf16", "cuda", None, "x86_64", "8.0", True),
        ("bf16", "cuda", None, "x86_64", "9.0", True),
        ("bf16", "cuda", None, "x86_64", None, None),
    ],
)
def test_native_or_emulated(precision, device, flags, arch, cc, native):
    assert P.native(precision, device, flags, arch, cc) is native


def test_cpu_flags_parsed_from_cpuinfo():
    x86 = "processor\t: 0\nmodel name\t: X\nflags\t\t: fpu sse avx2 avx512f avx512_bf16 amx_int8 ssse3\n"
    assert probes.parse_cpu_flags(x86) == {"avx2", "avx512f", "avx512_bf16", "amx_int8"}
    assert probes.flags_column(probes.parse_cpu_flags(x86)) == "avx2,avx512f,avx512_bf16,amx_int8"
    arm = "processor\t: 0\nFeatures\t: fp asimd asimdhp asimddp i8mm bf16\n"
    assert probes.parse_cpu_flags(arm) == {"asimdhp", "asimddp", "i8mm", "bf16"}
    assert probes.parse_cpu_flags("no flags here") is None and probes.flags_column(None) is None
    assert probes.flags_column(frozenset()) == ""


def test_this_hosts_flags_are_what_cpuinfo_says():
    """The cached probe reads /proc/cpuinfo: checked against grep's reading of the same file."""
    try:
        line = subprocess.run(
            ["grep", "-m1", "-E", "^(flags|Features)", "/proc/cpuinfo"], capture_output=True, text=True
        ).stdout
    except OSError:
        pytest.skip("no grep")
    if not line:
        pytest.skip("no /proc/cpuinfo flags here")
    want = set(line.split(":", 1)[1].split()) & set(probes.CPU_FLAGS)
    assert probes.cpu_flags() == want


def test_precision_module_imports_no_torch():
    code = "import sys, joulegrid.precision, joulegrid.probes; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_accelerator_probe_records_the_compute_capability(monkeypatch):
    """GPU path with a fake torch.cuda (no GPU here): the compute capability lands in the row, and
    decides precision_native for cuda cells."""
    torch = pytest.importorskip("torch")

    class Props:
        total_memory = 16 << 30

    fake = {
        "is_available": lambda: True,
        "device_count": lambda: 1,
        "get_device_name": lambda i=0: "Tesla T4",
        "get_device_capability": lambda i=0: (7, 5),
        "get_device_properties": lambda i=0: Props(),
    }
    for name, fn in fake.items():
        monkeypatch.setattr(torch.cuda, name, fn)
    row = probes.accelerator()
    assert row["gpu_model"] == "Tesla T4" and row["gpu_compute_capability"] == "7.5" and row["gpu_count"] == 1
    cc = row["gpu_compute_capability"]
    assert (
        P.native("fp16", "cuda", None, "x86_64", cc) is True and P.native("bf16", "cuda", None, "x86_64", cc) is False
    )
