"""The int8 weight scheme per CPU, from ONNX Runtime's documented kernel behaviour (see zooflow.toolchains.cpu)."""

from __future__ import annotations

import pytest

from zooflow import toolchains
from zooflow.config import ToolchainOptions
from zooflow.toolchains.cpu import cpu_flags, int8_scheme

ZEN3 = frozenset({"sse4_2", "avx", "avx2", "fma", "f16c", "bmi2"})  # AMD Zen 3: AVX2, no AVX-512, no VNNI
ZEN4 = ZEN3 | {"avx512f", "avx512bw", "avx512_vnni"}
ALDER_LAKE = ZEN3 | {"avx_vnni"}
SKYLAKE_X = ZEN3 | {"avx512f", "avx512bw"}  # AVX-512 without VNNI: vpmaddubsw saturates as on AVX2


@pytest.mark.parametrize(
    ("arch", "flags", "weights", "saturates"),
    [
        ("x86_64", ZEN3, "int8-reduced", True),
        ("x86_64", SKYLAKE_X, "int8-reduced", True),
        ("x86_64", ZEN4, "int8", False),
        ("x86_64", ALDER_LAKE, "int8", False),
        ("x86_64", None, "int8-reduced", True),  # flags unreadable: assume the worst
        ("arm64", frozenset({"asimd", "asimddp"}), "int8", False),
    ],
)
def test_auto_picks_weights_the_cpu_computes_exactly(
    arch: str, flags: frozenset[str] | None, weights: str, saturates: bool
) -> None:
    scheme = int8_scheme("auto", arch=arch, flags=flags)
    assert (scheme.weights, scheme.saturates) == (weights, saturates)
    assert scheme.requested == "auto" and scheme.reason


def test_an_explicit_scheme_is_used_as_asked_and_a_risky_one_says_so() -> None:
    assert int8_scheme("uint8", arch="x86_64", flags=ZEN3).weights == "uint8"
    risky = int8_scheme("int8", arch="x86_64", flags=ZEN3)
    assert risky.weights == "int8" and "may saturate" in risky.reason
    assert "may saturate" not in int8_scheme("int8", arch="x86_64", flags=ZEN4).reason


def test_this_machine_reports_its_flags_and_the_scheme_is_in_the_fingerprint() -> None:
    scheme = int8_scheme()
    flags = cpu_flags()
    assert flags is None or set(scheme.cpu_flags) <= flags
    prints = {
        w: toolchains.get("onnxruntime", ToolchainOptions(int8_weights=w)).fingerprint() for w in ("uint8", "int8")
    }
    assert prints["uint8"]["int8_weights"] == "uint8" and prints["int8"]["int8_weights"] == "int8"
    assert prints["uint8"] != prints["int8"]  # another scheme, other numbers: the caches must miss
    assert prints["uint8"]["int8_kernels"] == scheme.kernels
