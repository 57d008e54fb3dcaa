"""The CPU this runs on: its name, the cores this process may use, its instruction-set flags, and
the indexing precision those flags make worthwhile (``choose_precision``, a pure function of them).

The flags are read once per process, from ``/proc/cpuinfo`` on Linux (``flags`` on x86,
``Features`` on ARM); elsewhere the set is empty, which chooses fp32 (nothing measured there).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")

# Units that multiply 8-bit integers and add the products up in 32 bits in one instruction. ONNX
# Runtime's int8 kernels (our model: per-channel QInt8 weights, uint8 activations, full 8-bit range)
# are exact on them; without them (AVX2, plain AVX-512) the kernels add pairs of products in 16 bits,
# which can saturate: ORT's own guidance is to quantise to 7 bits for such CPUs
# (onnxruntime.quantization, "Choosing parameters for CPU inference"), which we have not measured.
INT8_UNITS = ("amx_int8", "avx512_vnni", "avx_vnni")
# bf16 units: the reader's training uses them; no indexing path does (see MEETS_QUALITY_RULE).
BF16_UNITS = ("amx_bf16", "avx512_bf16")

# The precisions below fp32 that met the quality rule (issue 12: under half a point of Recall@5 lost
# on SQuAD dev, none on the seed set); auto chooses among them only. Measured on AMD EPYC, 2 cores,
# AVX512-VNNI and AVX512-BF16, 2026-12-02 (README, "The indexing precision"):
# - int8: builds 2.0x as fast (82 against 41 passages per CPU-second x 2 cores) and loses 0.02 points
#   of Recall@5 on SQuAD dev, but on the seed set the default (hybrid, reader) loses one answer (q28),
#   and dense and weighted hybrid Recall@5 one gold passage each (0.977 -> 0.953): it fails.
# - bf16 (the torch backend; ONNX Runtime has no bf16 kernels on x86): 46 passages/s (CPU-time
#   estimate) on AVX512-BF16, no faster than fp32 ONNX (44) in the same run, and torch cannot pool
#   sentence vectors from the passage's pass, so each sentence costs an encoding of its own: slower
#   in a build; not a candidate.
MEETS_QUALITY_RULE: frozenset[str] = frozenset()


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo), to name beside every measured figure."""
    try:
        for line in CPUINFO.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown CPU"


def cpu_count() -> int:
    """Cores this process may run on: its CPU affinity, or fewer when ``OMP_NUM_THREADS`` says so
    (as Ray sets it for a worker given that many CPUs)."""
    try:
        cores = max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        cores = max(1, os.cpu_count() or 1)
    limit = os.environ.get("OMP_NUM_THREADS", "")
    return min(cores, int(limit)) if limit.isdigit() and int(limit) > 0 else cores


def parse_cpu_flags(cpuinfo: str) -> frozenset[str]:
    """The flags of the first processor listed in the text of a ``/proc/cpuinfo``: its ``flags``
    line (x86) or ``Features`` line (ARM), lower-cased; empty when there is neither."""
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in ("flags", "Features"):
            return frozenset(value.lower().split())
    return frozenset()


def machine() -> dict:
    """What a measured time was measured on: the CPU's name and the cores this process may use."""
    return {"cpu": cpu_name(), "cores": cpu_count()}


def machine_label(m: dict | None) -> str:
    return f"{m['cpu']}, {m['cores']} cores" if m else "machine not recorded"


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """This CPU's instruction-set flags (read once); empty where ``/proc/cpuinfo`` cannot be read."""
    try:
        return parse_cpu_flags(CPUINFO.read_text(errors="replace"))
    except OSError:
        return frozenset()


def int8_units(flags: Iterable[str]) -> list[str]:
    """The int8 dot-product units among ``flags`` (``INT8_UNITS``), in that order."""
    have = set(flags)
    return [f for f in INT8_UNITS if f in have]


def vector_units(flags: Iterable[str] | None = None) -> list[str]:
    """The vector and matrix units among ``flags`` (default: this CPU's) that decide encoder and reader
    speed, for naming the machine beside a measured figure."""
    have = set(cpu_flags() if flags is None else flags)
    return [f for f in ("avx2", "avx512f", *INT8_UNITS, *BF16_UNITS) if f in have]


def has_bf16(flags: Iterable[str]) -> bool:
    """Whether ``flags`` include a bf16 unit (``BF16_UNITS``)."""
    return bool(set(flags) & set(BF16_UNITS))


def choose_precision(flags: Iterable[str], backend: str = "auto", meets: Iterable[str] | None = None) -> str:
    """The indexing precision ``auto`` stands for on a CPU with ``flags``, for the encoder ``backend``:
    int8 (ONNX Runtime's dynamic quantisation; the backend auto or onnx) where the CPU has int8
    dot-product units (``INT8_UNITS``) and int8 is among the precisions that met the quality rule
    (``meets``, default ``MEETS_QUALITY_RULE``); fp32 everywhere else, which today is everywhere."""
    meets = MEETS_QUALITY_RULE if meets is None else frozenset(meets)
    if backend in ("auto", "onnx") and "int8" in meets and int8_units(flags):
        return "int8"
    return "fp32"


def resolve_precision(precision: str, backend: str = "auto", flags: Iterable[str] | None = None) -> str:
    """``precision``, with ``auto`` replaced by ``choose_precision`` of this CPU's flags (or ``flags``)."""
    if precision != "auto":
        return precision
    return choose_precision(cpu_flags() if flags is None else flags, backend)


def precision_note(precision: str, backend: str = "auto", flags: Iterable[str] | None = None) -> str:
    """Why ``auto`` stands for ``precision`` here, for a log line."""
    units = ", ".join(u.upper() for u in int8_units(cpu_flags() if flags is None else flags))
    if precision == "int8":
        why = f"this CPU has {units}"
    elif backend not in ("auto", "onnx"):
        why = f"the {backend} backend"
    elif units:
        why = f"int8 (this CPU has {units}) lost answers on the seed set (see README, The indexing precision)"
    else:
        why = f"no int8 dot-product unit ({', '.join(u.upper() for u in INT8_UNITS)}) on this CPU"
    return f"{precision}, chosen by --precision auto: {why}"
