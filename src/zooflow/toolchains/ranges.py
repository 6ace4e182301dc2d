"""Activation ranges for static int8 quantisation: two passes over the calibration set, searches in numpy.

Own code rather than ONNX Runtime's calibrators: ORT's histogram collector re-bins whenever a
chunk widens a tensor's range (its ranges depend on how the set is chunked), its entropy
calibrator defaults to 128 bins (a single candidate: the maximum), and it has no MSE search.
Here every mode works from the same statistics:

- pass 1: each tensor's min and max over the whole set;
- pass 2 (histogram modes): |x| counted into ``BINS`` equal bins over the fixed [0, max|x|],
  positive and negative values apart, exact zeros apart (int8 represents zero exactly: a zero
  never carries rounding error).

Counts are sums over images, so the same images in any chunks give the same ranges, bit for bit:
`calibration_chunk` bounds memory and changes nothing else. The modes:

- ``max``: [min, max];
- ``percentile``: the threshold t below which `percentile` % of all |x| (zeros included) lie,
  range [max(min, -t), min(max, t)] (ORT's and TensorRT's symmetric percentile);
- ``kl_divergence``: TensorRT's entropy calibration (Migacz, GTC 2017): for every i from 128 to
  2048 kept bins, P = the first i bins with the outliers added to the last, Q = those i bins
  merged into 128 and expanded over P's non-empty bins; t = i bin widths for the i minimising
  KL(P || Q). Exact zeros are left out of P, as in NVIDIA's pytorch-quantization (their spike
  in bin 0 would otherwise dominate every candidate).
- ``mse``: the range [a, b] (bin edges on each side) minimising the expected squared error:
  clipping error of the values outside plus uniform rounding noise step^2/12 on the non-zero
  values inside, step = (b - a) / 255. Searched over symmetric thresholds first, then each end
  in turn (coordinate descent) until neither moves: activations are often lopsided.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from zooflow.errors import ZooflowError

MODES = ("max", "percentile", "kl_divergence", "mse")
BINS = 2048
QUANTIZED_BINS = 128
LEVELS = 256  # uint8 activations
_EPS = 1e-4  # TensorRT/MXNet smoothing: the weight given to an empty Q bin under a non-empty P bin


@dataclass(frozen=True)
class Statistics:
    """What the calibration set showed of each tensor; every mode's range is a function of it."""

    names: tuple[str, ...]
    lo: np.ndarray  # (T,) float64 minimum
    hi: np.ndarray  # (T,) float64 maximum
    values: np.ndarray  # (T,) int64: values seen
    images: int
    counts: np.ndarray | None = None  # (T, 2, BINS) int64: |x| per bin over [0, amax]; [:, 0] x > 0, [:, 1] x < 0
    zeros: np.ndarray | None = None  # (T,) int64: exact zeros (in neither row of `counts`)

    @property
    def amax(self) -> np.ndarray:
        return np.asarray(np.maximum(np.abs(self.lo), np.abs(self.hi)))

    @property
    def abs_counts(self) -> np.ndarray:
        """(T, BINS): non-zero |x| per bin."""
        if self.counts is None:
            raise ValueError("this mode needs statistics collected with histograms=True")
        return np.asarray(self.counts.sum(axis=1))

    @property
    def width(self) -> np.ndarray:
        """Bin width per tensor (0 for a tensor that is all zeros)."""
        return self.amax / BINS


Runner = Callable[[np.ndarray], Sequence[np.ndarray]]


def _scale(amax: float) -> np.float32:
    """|x| * scale = bin position; float32 so that every value is binned alike in every chunk."""
    return np.float32(min(BINS / amax, 1e30)) if amax > 0 else np.float32(0.0)


def collect(
    run: Runner, batches: Callable[[], Iterable[np.ndarray]], names: Sequence[str], *, histograms: bool
) -> Statistics:
    """Statistics of the tensors `run` returns (in `names` order) over every batch; two passes with `histograms`."""
    count = len(names)
    lo, hi = np.full(count, np.inf), np.full(count, -np.inf)
    values = np.zeros(count, np.int64)
    images = 0
    for batch in batches():
        for i, array in enumerate(run(batch)):
            low, high = float(array.min()), float(array.max())
            if not (np.isfinite(low) and np.isfinite(high)):
                raise ZooflowError(
                    f"tensor {names[i]!r} is not finite on calibration images {images}..{images + len(batch) - 1}",
                    "check the model and its preprocessing: the fp32 model itself produces NaN or inf here",
                )
            lo[i], hi[i] = min(lo[i], low), max(hi[i], high)
            values[i] += array.size
        images += len(batch)
    if images == 0:
        raise ZooflowError("the calibration set is empty", "build a calibration set with at least one image")
    stats = Statistics(tuple(names), lo, hi, values, images)
    if not histograms:
        return stats
    scales = [_scale(a) for a in stats.amax]
    counts = np.zeros((count, 2, BINS), np.int64)
    zeros = np.zeros(count, np.int64)
    for batch in batches():
        for i, array in enumerate(run(batch)):
            flat = array.ravel()
            position = np.abs(flat)
            position *= scales[i]
            np.minimum(position, BINS - 1, out=position)
            index = position.astype(np.intp)
            index += (flat < 0) * BINS  # negative values count in the second row
            counts[i] += np.bincount(index, minlength=2 * BINS).reshape(2, BINS)
            zeros[i] += array.size - np.count_nonzero(array)
    counts[:, 0, 0] -= zeros
    return Statistics(stats.names, lo, hi, values, images, counts, zeros)


def _clip(stats: Statistics, threshold: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The range [max(min, -t), min(max, t)] of a symmetric threshold t."""
    return np.maximum(stats.lo, -threshold), np.minimum(stats.hi, threshold)


def _histograms(stats: Statistics) -> tuple[np.ndarray, np.ndarray]:
    """(non-zero |x| per bin (T, BINS), exact zeros (T,))."""
    counts = stats.abs_counts
    assert stats.zeros is not None
    return counts, stats.zeros


def max_ranges(stats: Statistics) -> tuple[np.ndarray, np.ndarray]:
    """[min, max] of every tensor."""
    return stats.lo.copy(), stats.hi.copy()


def percentile_ranges(stats: Statistics, percentile: float) -> tuple[np.ndarray, np.ndarray]:
    """The symmetric range holding `percentile` % of |x| (zeros included), at bin resolution (upper edge)."""
    counts, zeros = _histograms(stats)
    full = counts.copy()
    full[:, 0] += zeros
    # the count that must lie at or below the threshold (rounded first: 100000 * 0.999 is 99900.00000000001)
    need = np.ceil(np.round(stats.values.astype(np.float64) * (percentile / 100.0), 6))
    first = np.sum(np.cumsum(full, axis=1) < need[:, None], axis=1)
    threshold = (np.minimum(first, BINS - 1) + 1) * stats.width
    return _clip(stats, threshold)


def entropy_bins(counts: np.ndarray, quantized: int = QUANTIZED_BINS, start: int = QUANTIZED_BINS) -> np.ndarray:
    """Per row of `counts` (T, B): the number of kept bins i in [start, B] minimising KL(P || Q).

    The algorithm of NVIDIA's TensorRT calibration (Migacz 2017) as NVIDIA's pytorch-quantization
    implements it: P = the first i bins, the outliers beyond them added to the last; Q = those i
    bins merged into `quantized` levels (bin k in level floor(k * quantized / i): even groups, no
    remainder lumped into the last), each level's count spread back over its non-empty bins; a
    candidate whose P has mass where Q has none is out (KL infinite); ties go to the larger i.
    Vectorised with prefix sums, O(T x quantized) per candidate: P sums to N for every i and Q is
    constant (g_j / n_j) over the non-empty bins of each level j, so
    N KL = sum_k p_k log p_k - sum_j g_j log(g_j / n_j) - tail log q_last + N log((N - tail) / N).
    `tests/unit/test_ranges.py` checks it against the plain per-candidate loop.
    """
    h = counts.astype(np.float64)
    rows, size = h.shape
    total = h.sum(axis=1)
    best = np.full(rows, size)
    hlogh = np.where(h > 0, h * np.log(np.where(h > 0, h, 1.0)), 0.0)
    zero = np.zeros((rows, 1))
    csum = np.concatenate([zero, np.cumsum(h, axis=1)], axis=1)  # csum[:, k] = sum h[:, :k]
    cnz = np.concatenate([zero, np.cumsum(h > 0, axis=1)], axis=1)
    chlogh = np.concatenate([zero, np.cumsum(hlogh, axis=1)], axis=1)
    best_kl = np.full(rows, np.inf)
    safe_total = np.where(total > 0, total, 1.0)
    levels = np.arange(quantized + 1)
    for i in range(min(start, size), size + 1):
        edges = (levels * i + quantized - 1) // quantized  # first bin of each level: ceil(j * i / quantized)
        g = csum[:, edges[1:]] - csum[:, edges[:-1]]
        n = cnz[:, edges[1:]] - cnz[:, edges[:-1]]
        tail = total - csum[:, i]
        last = h[:, i - 1]
        p_last = last + tail
        plogp = chlogh[:, i - 1] + np.where(p_last > 0, p_last * np.log(np.where(p_last > 0, p_last, 1.0)), 0.0)
        cross = np.where(g > 0, g * np.log(np.where(g > 0, g, 1.0) / np.where(n > 0, n, 1.0)), 0.0).sum(axis=1)
        level = ((i - 1) * quantized) // i  # the level of the last kept bin
        q_last = g[:, level] / np.where(n[:, level] > 0, n[:, level], 1.0)
        cross += np.where(tail > 0, tail * np.log(np.where(q_last > 0, q_last, 1.0)), 0.0)
        kl = (plogp - cross) / safe_total + np.log(np.where(total > tail, total - tail, 1.0) / safe_total)
        kl = np.where((tail > 0) & (last == 0), np.inf, kl)  # outliers in P's last bin, nothing in Q's
        better = kl <= best_kl + 1e-12  # ties: the larger i
        best_kl[better], best[better] = np.minimum(kl[better], best_kl[better]), i
    return best


def entropy_ranges(stats: Statistics) -> tuple[np.ndarray, np.ndarray]:
    """TensorRT's KL threshold on the non-zero |x| histogram: 128 levels per side of zero (a tensor that
    is never negative gets all 256 over [0, t]); tensors with no non-zero value keep [min, max]."""
    counts, _ = _histograms(stats)
    threshold = stats.amax.copy()
    live = counts.sum(axis=1) > 0
    for one_sided in (False, True):
        rows = live & ((stats.lo >= 0) == one_sided)
        if rows.any():
            levels = 2 * QUANTIZED_BINS if one_sided else QUANTIZED_BINS
            threshold[rows] = entropy_bins(counts[rows], quantized=levels) * stats.width[rows]
    return _clip(stats, threshold)


def _tail_error(counts: np.ndarray, width: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per threshold j * width (j = 0..BINS): the squared clipping error of the values beyond it, and their count."""
    h = counts.astype(np.float64)
    centers = (np.arange(BINS) + 0.5)[None, :] * width[:, None]
    zero = np.zeros((len(h), 1))
    # suffix sums over bins j..BINS-1 (the bins beyond threshold j); j = BINS: nothing beyond
    s0, s1, s2 = (
        np.concatenate([np.cumsum(v[:, ::-1], axis=1)[:, ::-1], zero], axis=1) for v in (h, h * centers, h * centers**2)
    )
    t = np.arange(BINS + 1)[None, :] * width[:, None]
    return np.maximum(s2 - 2 * t * s1 + t * t * s0, 0.0), s0


def mse_ranges(stats: Statistics, levels: int = LEVELS) -> tuple[np.ndarray, np.ndarray]:
    """The range minimising clipping error + step^2/12 rounding noise on the non-zero values inside it."""
    if stats.counts is None:
        raise ValueError("this mode needs statistics collected with histograms=True")
    width = stats.width
    clip_high, beyond_high = _tail_error(stats.counts[:, 0], width)
    clip_low, beyond_low = _tail_error(stats.counts[:, 1], width)
    edges = np.arange(BINS + 1)[None, :] * width[:, None]
    highs = np.minimum(edges, stats.hi[:, None]).clip(min=0.0)  # b_j: no further than the data goes
    lows = np.maximum(-edges, stats.lo[:, None]).clip(max=0.0)  # a_i
    nonzero = stats.counts.sum(axis=(1, 2)).astype(np.float64)[:, None]
    noise = 1.0 / (12.0 * (levels - 1) ** 2)
    rows = np.arange(len(width))

    def error(i: np.ndarray, j: np.ndarray) -> np.ndarray:
        """E(a_i, b_j) with i or j (T,) or (T, BINS + 1) index arrays."""
        low, high = np.take_along_axis(lows, i, 1), np.take_along_axis(highs, j, 1)
        inside = nonzero - np.take_along_axis(beyond_low, i, 1) - np.take_along_axis(beyond_high, j, 1)
        return np.asarray(
            np.take_along_axis(clip_low, i, 1)
            + np.take_along_axis(clip_high, j, 1)
            + inside * (high - low) ** 2 * noise
        )

    every = np.broadcast_to(np.arange(BINS + 1), (len(width), BINS + 1))
    i = j = np.argmin(error(every, every), axis=1)[:, None]  # best symmetric threshold
    for _ in range(32):  # then each end in turn, until neither moves
        j_new = np.argmin(error(np.broadcast_to(i, every.shape), every), axis=1)[:, None]
        i_new = np.argmin(error(every, np.broadcast_to(j_new, every.shape)), axis=1)[:, None]
        if np.array_equal(i_new, i) and np.array_equal(j_new, j):
            break
        i, j = i_new, j_new
    low, high = lows[rows, i[:, 0]], highs[rows, j[:, 0]]
    live = nonzero[:, 0] > 0
    return np.where(live, low, stats.lo), np.where(live, high, stats.hi)


def clipping(stats: Statistics, low: np.ndarray, high: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per tensor, what [low, high] saturates: (share of its values outside, their squared clipping error over
    the tensor's energy sum x^2), at bin resolution (values at their bin's centre).

    Every mode's thresholds lie on bin edges (or at the tensor's own min/max, clipping nothing); a
    compiled file's range (moved so that zero is exact) is rounded to the nearest edge, so the bins
    beyond it are the values the quantiser saturates.
    """
    rows = len(stats.names)
    if stats.counts is None:  # max-mode statistics: [min, max] clips nothing by construction
        # a quantiser's range is [min, max] moved by up to half a step so that zero is exact: not clipping
        step = np.where(np.isfinite(high - low), (high - low) / (LEVELS - 1), 0.0)
        if np.any(low > stats.lo + step) or np.any(high < stats.hi - step):
            raise ValueError("clipping inside [min, max] needs statistics collected with histograms=True")
        return np.zeros(rows), np.zeros(rows)
    width = np.where(stats.width > 0, stats.width, 1.0)
    every = np.arange(rows)
    beyond, error = np.zeros(rows), np.zeros(rows)
    for side, end, threshold in ((0, stats.hi, high), (1, -stats.lo, -low)):
        first = np.where(threshold < end, np.rint(np.maximum(threshold, 0.0) / width), BINS).astype(np.intp)
        clip_error, count = _tail_error(stats.counts[:, side], width)
        beyond += count[every, first]
        error += clip_error[every, first]
    centres = (np.arange(BINS) + 0.5)[None, :] * width[:, None]
    energy = (stats.counts.sum(axis=1) * centres**2).sum(axis=1)
    return beyond / np.maximum(stats.values, 1), error / np.where(energy > 0, energy, 1.0)


def ranges(stats: Statistics, mode: str, *, percentile: float = 99.999) -> dict[str, tuple[float, float]]:
    """Per tensor name, its (low, high) activation range for calibrate `mode`."""
    if mode == "max":
        low, high = max_ranges(stats)
    elif mode == "percentile":
        low, high = percentile_ranges(stats, percentile)
    elif mode == "kl_divergence":
        low, high = entropy_ranges(stats)
    elif mode == "mse":
        low, high = mse_ranges(stats)
    else:
        raise ValueError(f"unknown calibrate mode {mode!r}")
    return {name: (float(a), float(b)) for name, a, b in zip(stats.names, low, high, strict=True)}
