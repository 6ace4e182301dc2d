"""This CPU, as far as int8 numbers depend on it: model name, ISA flags, and the int8 weight scheme.

ONNX Runtime's x86 int8 kernels without VNNI (AVX2 and AVX-512 "core") multiply uint8
activations by int8 weights with ``vpmaddubsw``, which adds each pair of u8*s8 products into a
*saturating* int16: two large products (255 * 127 * 2 > 32767) are clipped, and a model loses
10-16 dB of SQNR against the same QDQ file computed in float. VNNI (``vpdpbusd``) and AMX
accumulate in int32, and ARM's kernels widen before they add, so neither saturates. ORT's own
documentation names the two cures for the non-VNNI case: 7-bit weights (``reduce_range``) or
uint8 weights (the u8u8 kernels widen to int16 first). zooflow picks 7-bit weights there (same
speed as u8s8; uint8 weights are offered as an option) and full-range int8 weights elsewhere.
"""

from __future__ import annotations

import functools
import platform
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

Int8Weights = Literal["auto", "int8", "int8-reduced", "uint8"]
# flags (as Linux's /proc/cpuinfo spells them) of x86 int8 dot products that accumulate in int32
VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
# the flags reported in metadata: the ones ORT's kernel choice for int8 depends on
REPORTED_FLAGS = ("avx2", "avx512f", "avx512bw", *VNNI_FLAGS, "asimddp", "i8mm")
WEIGHTS = {
    "int8": "int8 weights, full range [-127, 127]",
    "int8-reduced": "int8 weights, 7-bit range [-64, 64] (ORT reduce_range)",
    "uint8": "uint8 weights (ORT's u8u8 kernels)",
}


@functools.cache
def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux)."""
    for line in _cpuinfo().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cpu_flags() -> frozenset[str] | None:
    """The ISA flags of the first CPU (x86 ``flags``, ARM ``Features``); None where they cannot be read."""
    for line in _cpuinfo().splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return None


def architecture() -> str:
    """``x86_64``, ``arm64`` or what the platform says otherwise."""
    machine = platform.machine().lower()
    if machine in ("x86_64", "amd64"):
        return "x86_64"
    if machine in ("aarch64", "arm64"):
        return "arm64"
    return machine or "unknown"


@dataclass(frozen=True)
class Int8Scheme:
    """The int8 weight scheme used on this CPU, and why (recorded with every int8 artifact)."""

    weights: Literal["int8", "int8-reduced", "uint8"]
    requested: Int8Weights
    kernels: str  # the class of ORT int8 kernels this CPU gets, e.g. "x86_64 VNNI (int32 accumulation)"
    saturates: bool  # whether full-range int8 weights would saturate here
    reason: str
    architecture: str
    cpu: str
    cpu_flags: tuple[str, ...]  # the REPORTED_FLAGS this CPU has (None read: empty, and said in `kernels`)

    @property
    def description(self) -> str:
        return WEIGHTS[self.weights]

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "cpu_flags": list(self.cpu_flags), "description": self.description}


def kernels(arch: str, flags: frozenset[str] | None) -> tuple[str, bool]:
    """(the class of int8 kernels, whether u8s8 with full-range weights saturates) for this CPU."""
    if arch == "arm64":
        return "arm64 (widening multiply-add, int32 accumulation)", False
    if arch != "x86_64":
        return f"{arch} (unknown int8 kernels)", True
    if flags is None:
        return "x86_64, CPU flags unreadable (assumed without VNNI)", True
    vnni = [f for f in VNNI_FLAGS if f in flags]
    if vnni:
        return f"x86_64 {'/'.join(vnni)} (int32 accumulation)", False
    if "avx2" in flags:
        return "x86_64 AVX2 without VNNI (vpmaddubsw: int16 saturation)", True
    return "x86_64 without AVX2 (kernels not known: assumed to saturate)", True


def int8_scheme(
    requested: Int8Weights = "auto", *, arch: str | None = None, flags: frozenset[str] | None = None
) -> Int8Scheme:
    """The weight scheme for `requested` on this CPU (or on `arch` with `flags`): ``auto`` avoids saturating kernels."""
    if arch is None:
        arch, flags = architecture(), cpu_flags()
    kind, saturates = kernels(arch, flags)
    if requested != "auto":
        weights: Literal["int8", "int8-reduced", "uint8"] = requested
        reason = f"asked for {requested}"
        if requested == "int8" and saturates:
            reason += " (this CPU's u8s8 kernels may saturate with full-range weights)"
    elif saturates:
        weights = "int8-reduced"
        reason = f"{kind}: full-range int8 weights would saturate; 7-bit weights keep every product pair in range"
    else:
        weights = "int8"
        reason = f"{kind}: full-range int8 weights are exact"
    present = tuple(f for f in REPORTED_FLAGS if flags and f in flags)
    return Int8Scheme(weights, requested, kind, saturates, reason, arch, cpu_model(), present)
