"""The machine a speed figure holds for: CPU model, its matrix units, library versions, and the
matmul rate in each precision (the ceiling every benchmark row is compared with).

Matrix units are read from the ``flags`` line of ``/proc/cpuinfo`` (Linux; elsewhere they are
``unknown`` and treated as absent):

* ``amx_tile``, ``amx_bf16``, ``amx_int8``: Intel AMX tile matrix units (bf16 and int8);
* ``avx512_bf16``: AVX-512 bf16 dot products;
* ``avx512_vnni``, ``avx_vnni``: int8 dot products (VNNI).

A CPU with none of them (e.g. AMD EPYC up to Zen 3) still runs every bf16 and int8 path, in
emulation or through wider fp32 / AVX2 integer code; :attr:`CpuInfo.bf16_hardware` and
:attr:`CpuInfo.int8_hardware` say whether it has the units, and the callers fall back (and say so)
where it has not.

Matmul rates: a square ``n x n x n`` product timed in the precision asked for. fp32 and bf16 run
``torch.matmul`` (oneDNN/MKL). int8 runs ONNX Runtime's ``MatMulInteger`` (uint8 x int8 -> int32,
the operand types of ONNX Runtime's int8 convolutions, on its MLAS kernels, which use AMX or VNNI
where present) when ``onnxruntime`` is installed, else ``torch._int_mm`` (int8 x int8 -> int32,
oneDNN). :func:`matmul_kernel` names the one in use.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import platform
import sys
import time
from typing import Callable

import torch

MATRIX_FLAGS = ("amx_tile", "amx_bf16", "amx_int8", "amx_fp16", "avx512_bf16", "avx512_vnni", "avx_vnni",
                "avx512f", "avx2")
PRECISIONS = ("fp32", "bf16", "fp16", "int8")
CPU_MATMUL_SIZE = 2048
CUDA_MATMUL_SIZE = 8192


@dataclasses.dataclass(frozen=True)
class CpuInfo:
    """What a CPU offers for matrix work. ``flags`` is None where they could not be read."""

    model: str
    flags: frozenset | None

    @property
    def known(self) -> bool:
        return self.flags is not None

    def has(self, flag: str) -> bool:
        return bool(self.flags) and flag in self.flags

    @property
    def amx(self) -> bool:
        return self.has("amx_tile") and (self.has("amx_bf16") or self.has("amx_int8"))

    @property
    def bf16_hardware(self) -> bool:
        """bf16 matrix units: AMX-BF16 or AVX512-BF16."""
        return self.has("amx_bf16") or self.has("avx512_bf16")

    @property
    def int8_hardware(self) -> bool:
        """int8 dot-product units: AMX-INT8, AVX512-VNNI or AVX-VNNI."""
        return self.has("amx_int8") or self.has("avx512_vnni") or self.has("avx_vnni")

    @property
    def capabilities(self) -> str:
        """``"AMX (bf16, int8), AVX512-BF16, AVX512-VNNI"``, ``"none"`` or ``"unknown"``."""
        if not self.known:
            return "unknown"
        parts = []
        if self.amx:
            kinds = [k for k, f in (("bf16", "amx_bf16"), ("int8", "amx_int8"), ("fp16", "amx_fp16")) if self.has(f)]
            parts.append(f"AMX ({', '.join(kinds)})")
        parts += [name for name, flag in (("AVX512-BF16", "avx512_bf16"), ("AVX512-VNNI", "avx512_vnni"),
                                          ("AVX-VNNI", "avx_vnni")) if self.has(flag)]
        return ", ".join(parts) or "none"

    @property
    def vector_isa(self) -> str:
        if not self.known:
            return "unknown"
        return "AVX-512" if self.has("avx512f") else "AVX2" if self.has("avx2") else "other"

    def fallback_note(self, precision: str) -> str:
        """Empty where ``precision`` has hardware units here, else why it runs without them."""
        if precision == "bf16" and not self.bf16_hardware:
            return f"no bf16 units ({self.capabilities})"
        if precision == "int8" and not self.int8_hardware:
            return f"no int8 dot-product units ({self.capabilities})"
        return ""


def parse_cpuinfo(text: str) -> CpuInfo:
    """A :class:`CpuInfo` from the text of ``/proc/cpuinfo`` (the first processor's entry)."""
    model, flags = None, None
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        key = key.strip()
        if not sep:
            continue
        if key == "model name" and model is None:
            model = value.strip()
        elif key in ("flags", "Features") and flags is None:  # x86 / ARM spelling
            flags = frozenset(value.split())
    return CpuInfo(model or platform.processor() or platform.machine() or "unknown CPU", flags)


@functools.lru_cache(maxsize=1)
def cpu_info() -> CpuInfo:
    """This machine's :class:`CpuInfo` (``/proc/cpuinfo`` on Linux; elsewhere flags unknown)."""
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            return parse_cpuinfo(f.read())
    return CpuInfo(platform.processor() or platform.machine() or "unknown CPU", None)


def device_name(device: str = "cpu") -> str:
    if device == "cuda":
        return torch.cuda.get_device_name()
    return cpu_info().model


def versions() -> dict[str, str]:
    """Versions of the libraries whose kernels a speed figure depends on (installed ones only)."""
    out = {"python": platform.python_version(), "torch": torch.__version__}
    for module, name in (("onnxruntime", "onnxruntime"), ("openvino", "openvino"), ("nncf", "nncf")):
        if module in sys.modules or _importable(module):
            with contextlib.suppress(Exception):
                out[name] = str(__import__(module).__version__).split("-")[0]  # openvino: 2026.4.1-22982-...
    return out


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def machine_summary(threads: int) -> str:
    """One line naming CPU, matrix units, threads, library versions and the load average."""
    info = cpu_info()
    load = ""
    with contextlib.suppress(OSError, AttributeError):
        load = f", load average {os.getloadavg()[0]:.2f}"
    libs = ", ".join(f"{k} {v}" for k, v in versions().items() if k != "python")
    return (f"{info.model} (matrix units: {info.capabilities}), {os.cpu_count()} logical CPUs, "
            f"{threads} threads, {libs}{load}")


def matmul_kernel(precision: str, device: str = "cpu") -> str:
    """The GEMM :func:`matmul_runner` times for ``precision``."""
    if precision == "int8":
        if device != "cpu":
            raise ValueError("matmul int8: timed on CPU only")
        return "onnxruntime MatMulInteger (u8 x s8)" if _importable("onnxruntime") else "torch._int_mm (s8 x s8)"
    return f"torch.matmul ({precision})"


def matmul_runner(precision: str, device: str = "cpu", n: int | None = None) -> tuple[Callable[[], object], float]:
    """``(run, flop)``: a no-argument callable computing one ``n^3`` product in ``precision``
    (fp32, bf16, fp16, int8), and the FLOP it does (``2 n^3``)."""
    n = n or (CUDA_MATMUL_SIZE if device == "cuda" else CPU_MATMUL_SIZE)
    if precision not in PRECISIONS:
        raise ValueError(f"precision: {precision!r} is unknown; expected one of {', '.join(PRECISIONS)}")
    g = torch.Generator().manual_seed(0)
    if precision == "int8":
        a = torch.randint(-128, 128, (n, n), generator=g, dtype=torch.int8)
        b = torch.randint(-128, 128, (n, n), generator=g, dtype=torch.int8)
        if matmul_kernel("int8", device).startswith("onnxruntime"):
            return _ort_matmul_integer(a, b), 2.0 * n ** 3
        b = b.t().contiguous().t()  # column-major B: oneDNN's fast int8 layout
        return (lambda: torch._int_mm(a, b)), 2.0 * n ** 3
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    a, b = (torch.randn(n, n, generator=g).to(device=device, dtype=dtype) for _ in range(2))
    return (lambda: a @ b), 2.0 * n ** 3


def _ort_matmul_integer(a: torch.Tensor, b: torch.Tensor) -> Callable[[], object]:
    import onnxruntime as ort
    from onnx import TensorProto, helper

    n = a.shape[0]
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["A", "B"], ["C"])], "int8_matmul",
        [helper.make_tensor_value_info("A", TensorProto.UINT8, [n, n])],
        [helper.make_tensor_value_info("C", TensorProto.INT32, [n, n])],
        initializer=[helper.make_tensor("B", TensorProto.INT8, [n, n], b.numpy().tobytes(), raw=True)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    feed = {"A": (a.numpy().astype("int16") + 128).astype("uint8")}
    return lambda: session.run(None, feed)


def matmul_rate(precision: str = "fp32", device: str = "cpu", n: int | None = None, warmup: int = 2,
                iters: int = 10) -> float:
    """GFLOP/s of one ``n^3`` product in ``precision`` with the current thread count (mean of
    ``iters`` after ``warmup``). :func:`~atrous.deploy.benchmark.benchmark` times the same
    product interleaved with the models instead, so it sees the same machine load."""
    run, flop = matmul_runner(precision, device, n)
    for _ in range(warmup):
        run()
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(iters):
        run()
    if device == "cuda":
        torch.cuda.synchronize()
    return flop * iters / (time.perf_counter() - start) / 1e9


def fingerprint(threads: int) -> dict:
    """What a cached speed decision depends on: CPU model and matrix flags, thread count and the
    library versions."""
    info = cpu_info()
    flags = sorted(f for f in MATRIX_FLAGS if info.has(f)) if info.known else None
    from .. import __version__

    return {"cpu": info.model, "flags": flags, "threads": int(threads), "atrous": __version__, **versions()}
