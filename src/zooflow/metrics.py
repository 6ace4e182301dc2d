"""Output-fidelity numbers shared by evaluation and the toolchains' int8 checks (SQNR in dB).

Kept below both so neither imports the other (the toolchains rank layers by SQNR; evaluation
compares a run's outputs with the fp32 reference).
"""

from __future__ import annotations

import math

import numpy as np


def sqnr_from_noise(reference: np.ndarray, noise: float) -> float:
    """SQNR in dB of 2-D `reference` rows against a noise power already summed (inf when it is 0)."""
    signal = float(np.einsum("ij,ij->", reference, reference, dtype=np.float64))
    return (10.0 * math.log10(signal / noise)) if noise > 0 else math.inf


def sqnr_db(rows: np.ndarray, reference: np.ndarray) -> float:
    """Output SQNR in dB: reference power over the power of the difference (inf when identical)."""
    a = np.asarray(rows, dtype=np.float32).reshape(len(rows), -1)
    b = np.asarray(reference, dtype=np.float32).reshape(len(reference), -1)
    diff = a - b
    return sqnr_from_noise(b, float(np.einsum("ij,ij->", diff, diff, dtype=np.float64)))
