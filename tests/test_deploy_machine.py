"""The machine description (issue 14): CPU model and matrix units from /proc/cpuinfo texts, the
per-precision matmul references, and the bounded competing load of the shared-CPU bench mode.
No timings are asserted."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import torch

from atrous.deploy.contention import competing_load
from atrous.deploy.machine import CpuInfo, machine_summary, matmul_kernel, matmul_runner, parse_cpuinfo

from conftest import REPO

XEON_AMX = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu vme sse sse2 avx avx2 fma avx512f avx512bw avx512vl avx_vnni avx512_bf16 \
avx512_vnni amx_bf16 avx512_fp16 amx_tile amx_int8 arch_capabilities

processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu
"""
EPYC_ZEN2 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B12
flags\t\t: fpu vme de pse tsc msr sse sse2 ht syscall avx f16c fma avx2 bmi1 bmi2 sha_ni clwb rdpid
"""
CASCADE_LAKE = """model name\t: Intel(R) Xeon(R) Gold 6248
flags\t\t: fpu sse avx avx2 avx512f avx512bw avx512_vnni
"""


def test_amx_xeon_has_bf16_and_int8_units():
    info = parse_cpuinfo(XEON_AMX)
    assert info.model == "Intel(R) Xeon(R) Platinum 8480+"
    assert info.amx and info.bf16_hardware and info.int8_hardware
    assert info.capabilities == "AMX (bf16, int8), AVX512-BF16, AVX512-VNNI, AVX-VNNI"
    assert info.vector_isa == "AVX-512" and info.fallback_note("bf16") == "" and info.fallback_note("int8") == ""


def test_epyc_without_units_falls_back_and_says_so():
    info = parse_cpuinfo(EPYC_ZEN2)
    assert info.model == "AMD EPYC 7B12" and info.known
    assert not info.amx and not info.bf16_hardware and not info.int8_hardware
    assert info.capabilities == "none" and info.vector_isa == "AVX2"
    assert "no bf16 units" in info.fallback_note("bf16") and "no int8" in info.fallback_note("int8")


def test_vnni_without_bf16_and_unknown_flags():
    info = parse_cpuinfo(CASCADE_LAKE)
    assert info.int8_hardware and not info.bf16_hardware and info.capabilities == "AVX512-VNNI"
    unknown = CpuInfo("some CPU", None)  # not Linux: flags unknown, treated as absent
    assert unknown.capabilities == "unknown" and not unknown.bf16_hardware and not unknown.known


def test_summary_names_cpu_units_threads_and_versions():
    line = machine_summary(2)
    assert "matrix units:" in line and "2 threads" in line and f"torch {torch.__version__}" in line


@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8"])
def test_matmul_reference_runs_in_each_precision(precision):
    run, flop = matmul_runner(precision, "cpu", n=64)
    run()
    assert flop == 2 * 64 ** 3 and matmul_kernel(precision)


def test_int8_reference_without_onnxruntime_is_torch_int_mm(monkeypatch):
    import atrous.deploy.machine as machine

    monkeypatch.setattr(machine, "_importable", lambda module: False)
    assert matmul_kernel("int8") == "torch._int_mm (s8 x s8)"
    run, _ = matmul_runner("int8", "cpu", n=64)
    assert run().dtype == torch.int32


def _gone(pid: int) -> bool:
    """The process has ended: no such pid, or a zombie waiting for a parent that is not ours."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_competing_load_starts_and_always_stops_its_workers():
    with competing_load(2) as load:
        pids = load.pids
        assert len(pids) == 2 and load.alive() == pids and "2 competing" in load.description
    assert all(_gone(pid) for pid in pids)
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C inside the timed block
        with competing_load(1) as load:
            pids = load.pids
            raise KeyboardInterrupt
    assert all(_gone(pid) for pid in pids)
    with competing_load(0) as load:
        assert load.n == 0 and load.description == "no competing load"


def test_competing_workers_end_when_their_parent_is_killed():
    code = ("import os, signal, sys\nfrom atrous.deploy.contention import competing_load\n"
            "with competing_load(1) as load:\n    print(load.pids[0], flush=True)\n"
            "    os.kill(os.getpid(), signal.SIGKILL)\n")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == -9
    pid = int(proc.stdout.split()[0])
    deadline = time.monotonic() + 10
    while not _gone(pid) and time.monotonic() < deadline:  # re-parented: it notices and exits
        time.sleep(0.1)
    assert _gone(pid)
