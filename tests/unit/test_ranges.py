"""Activation-range searches against independent references: brute force, the plain KL loop, numpy."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from zooflow.errors import ZooflowError
from zooflow.toolchains import ranges


def _stats(samples: np.ndarray, chunks: int = 1) -> ranges.Statistics:
    """Statistics of one tensor whose values over the 'images' are `samples`, fed in `chunks` batches."""
    parts = np.array_split(samples.astype(np.float32), chunks)
    return ranges.collect(lambda batch: [batch], lambda: iter(parts), ["x"], histograms=True)


def _ort_quantize(x: np.ndarray, low: float, high: float) -> np.ndarray:
    """ONNX Runtime's uint8 QuantizeLinear -> DequantizeLinear for the range [low, high].

    ORT's published rule (quant_utils.compute_scale_zp): the range is widened to hold 0,
    scale = (max - min) / 255, zero point = round(-min / scale), q = saturate(round(x / scale) + zp).
    """
    low, high = min(low, 0.0), max(high, 0.0)
    scale = (high - low) / 255.0
    zero = np.clip(np.round(-low / scale), 0, 255)
    return (np.clip(np.round(x / scale) + zero, 0, 255) - zero) * scale


def _error(nonzero: np.ndarray, low: float, high: float) -> float:
    """Total squared error of real quantisation of the samples (exact zeros stay exact: left out)."""
    return float(np.sum((nonzero - _ort_quantize(nonzero, low, high)) ** 2))


def _brute_force(nonzero: np.ndarray) -> float:
    """The least error over every range [a, b] in [min, max]: a 13 x 25 grid, refined 11 x 11 at its best."""
    lo, hi = min(float(nonzero.min()), 0.0), max(float(nonzero.max()), 0.0)

    def best(lows: np.ndarray, highs: np.ndarray) -> tuple[float, float, float]:
        return min((_error(nonzero, a, b), a, b) for a in lows for b in highs if b > a)

    _, a, b = best(np.linspace(lo, 0.0, 13), np.linspace(0.0, hi, 25))
    da, db = -lo / 12, hi / 24
    found, _, _ = best(
        np.unique(np.clip(np.linspace(a - da, a + da, 11), lo, 0.0)),
        np.unique(np.clip(np.linspace(b - db, b + db, 11), 0.0, hi)),
    )
    return found


# name: sampler. Enough non-zero values (200,000; 1,000,000 one-sided, where the search is cheap) that the
# luck of where values fall between grid points moves the realised error by under 0.3 %.
# Post-ReLU data is max(N(mu, 2), 0): half of it, or 89 % at mu = -2.5, exact zeros.
DISTRIBUTIONS: dict[str, Any] = {
    "gaussian": lambda rng: rng.normal(0.0, 1.0, 200_000),
    "shifted-gaussian": lambda rng: rng.normal(0.6, 1.7, 200_000),
    "laplace": lambda rng: rng.laplace(0.0, 0.8, 200_000),
    "relu": lambda rng: np.maximum(rng.normal(0.0, 2.0, 2_000_000), 0.0),
    "relu-mostly-zeros": lambda rng: np.maximum(rng.normal(-2.5, 2.0, 9_500_000), 0.0),
}


@pytest.mark.parametrize("kind", list(DISTRIBUTIONS))
@pytest.mark.parametrize("seed", [0, 1])
def test_mse_range_is_within_one_percent_of_brute_force(kind: str, seed: int) -> None:
    x = DISTRIBUTIONS[kind](np.random.default_rng(seed))
    (low, high) = ranges.ranges(_stats(x), "mse")["x"]
    assert _ort_quantize(np.zeros(1), low, high)[0] == 0.0  # why zeros may be left out of the error
    nonzero = x[x != 0]
    chosen, best = _error(nonzero, low, high), _brute_force(nonzero)
    assert chosen <= best * 1.01, (kind, seed, low, high, chosen / best)
    assert high < x.max()  # it clips: the far tail is not worth its rounding noise
    if kind.startswith("relu"):
        assert low == 0.0


def _direct_kl_bins(h: np.ndarray, quantized: int = ranges.QUANTIZED_BINS) -> int:
    """TensorRT's entropy calibration as NVIDIA's pytorch-quantization loops over it (slow, obvious)."""
    best, best_i = np.inf, len(h)
    for i in range(ranges.QUANTIZED_BINS, len(h) + 1):
        level = np.array([k * quantized // i for k in range(i)])  # bin k -> level floor(k * quantized / i)
        level[h[:i] == 0] = -1  # empty bins stay empty in Q
        q = np.zeros(i)
        for j in set(level) - {-1}:
            members = level == j
            q[members] = h[:i][members].sum() / members.sum()
        p = h[:i].astype(np.float64).copy()
        p[-1] += h[i:].sum()  # outliers into the last bin
        if np.any((p > 0) & (q == 0)):
            continue  # KL is infinite
        pn, qn = p / p.sum(), q / q.sum()
        mask = pn > 0
        kl = float(np.sum(pn[mask] * np.log(pn[mask] / qn[mask])))
        if kl <= best + 1e-12:  # ties: the larger i
            best, best_i = min(kl, best), i
    return best_i


def test_vectorised_kl_search_picks_what_the_plain_loop_picks() -> None:
    rng = np.random.default_rng(5)
    rows = []
    for sample in (
        np.abs(rng.normal(0, 1, 50_000)),
        np.abs(rng.laplace(0, 1, 50_000)),
        np.abs(rng.standard_t(3, 20_000)),
    ):
        rows.append(np.histogram(sample, bins=1024, range=(0, sample.max()))[0])
    sparse = np.zeros(1024, np.int64)  # empty bins, and an empty last kept bin with outliers beyond it
    sparse[rng.choice(1024, 60, replace=False)] = rng.integers(1, 500, 60)
    rows.append(sparse)
    counts = np.stack(rows)
    for levels in (128, 256):  # per side of zero: signed tensors, and tensors that are never negative
        got = ranges.entropy_bins(counts, quantized=levels)
        assert list(got) == [_direct_kl_bins(row, levels) for row in counts], levels
    assert all(128 <= g < 1024 for g in got[:3])  # long tails are clipped, not kept whole


def test_kl_threshold_clips_a_long_tail_and_differs_from_max() -> None:
    x = np.random.default_rng(6).laplace(0.0, 1.0, 200_000)
    (low, high) = ranges.ranges(_stats(x), "kl_divergence")["x"]
    assert 2.0 < high < x.max() and low == -high


def test_percentile_is_the_percentile_of_abs_values_at_bin_resolution() -> None:
    x = np.random.default_rng(7).normal(0.0, 1.0, 100_000)
    stats = _stats(x)
    width = float(stats.width[0])
    for p in (99.0, 99.9, 99.999):
        (low, high) = ranges.ranges(stats, "percentile", percentile=p)["x"]
        threshold = max(-low, high)  # the data's own min or max may cut one side shorter
        exact = float(np.percentile(np.abs(x.astype(np.float32)), p))
        assert exact - 1e-6 <= threshold <= exact + width + 1e-6, (p, threshold, exact)
    assert ranges.ranges(stats, "percentile", percentile=99.0) != ranges.ranges(stats, "percentile", percentile=99.999)


def test_max_is_min_and_max() -> None:
    x = np.random.default_rng(8).normal(1.0, 3.0, 10_000).astype(np.float32)
    assert ranges.ranges(_stats(x), "max")["x"] == (float(x.min()), float(x.max()))


@pytest.mark.parametrize("mode", ["max", "percentile", "kl_divergence", "mse"])
def test_any_chunking_of_the_same_values_gives_the_same_range(mode: str) -> None:
    x = np.concatenate([np.random.default_rng(9).laplace(0, 1, 99_999), [0.0] * 7, [25.0]])
    expected = ranges.ranges(_stats(x, 1), mode)
    for chunks in (2, 7, 64):
        assert ranges.ranges(_stats(x, chunks), mode) == expected, chunks


def test_an_all_zero_tensor_keeps_a_zero_range_and_nan_is_refused() -> None:
    zeros = ranges.collect(lambda b: [b], lambda: iter([np.zeros(10, np.float32)]), ["z"], histograms=True)
    for mode in ("max", "percentile", "kl_divergence", "mse"):
        assert ranges.ranges(zeros, mode)["z"] == (0.0, 0.0)
    with pytest.raises(ZooflowError, match=r"'y' is not finite on calibration images 0\.\.0"):
        ranges.collect(lambda b: [b], lambda: iter([np.array([np.nan], np.float32)]), ["y"], histograms=False)


def test_clipping_counts_the_values_each_range_saturates_and_their_error() -> None:
    """Share of values outside every mode's range and their squared error, from the histograms, against the values."""
    rng = np.random.default_rng(11)
    spikes = rng.choice([0.3, 2.4, 4.6, 7.0], 60_000)  # flat image regions: a few constants, much repeated
    tensors = [
        np.concatenate([rng.normal(0.0, 1.0, 100_000), spikes, [15.8, -11.2]]).astype(np.float32),
        np.maximum(rng.laplace(0.5, 1.0, 150_000), 0.0).astype(np.float32),  # one-sided, many exact zeros
        rng.normal(-2.0, 0.7, 90_000).astype(np.float32),  # never positive
    ]
    stats = ranges.collect(lambda _: tensors, lambda: iter([np.zeros(1)]), ["a", "b", "c"], histograms=True)
    for mode in ranges.MODES:
        found = ranges.ranges(stats, mode, percentile=99.0)
        low, high = (np.array([found[n][k] for n in stats.names]) for k in (0, 1))
        shares, errors = ranges.clipping(stats, low, high)
        for x, share, error, a, b in zip(tensors, shares, errors, low, high, strict=True):
            x64 = x.astype(np.float64)
            exact = np.count_nonzero((x < a) | (x > b))
            edge = np.count_nonzero(np.isclose(x, a, rtol=0, atol=1e-5) | np.isclose(x, b, rtol=0, atol=1e-5))
            assert abs(share * x.size - exact) <= edge, (mode, share * x.size, exact, edge)
            exact_error = np.sum((x64 - np.clip(x64, a, b)) ** 2) / np.sum(x64**2)
            assert error == pytest.approx(exact_error, rel=0.03, abs=1e-7), (mode, error, exact_error)
        if mode == "max":
            assert not shares.any() and not errors.any()
        if mode == "percentile":  # at most 1 % of |x| beyond the threshold (less where it falls in a spike)
            assert all(s <= 0.0101 for s in shares) and all(shares[1:] > 0.0099), shares
        if mode == "kl_divergence":  # the spikes pull TensorRT's threshold in: a fifth of the values clipped
            assert shares[0] > 0.1 and errors[0] > 0.01, (shares, errors)
    max_stats = ranges.collect(lambda _: tensors, lambda: iter([np.zeros(1)]), ["a", "b", "c"], histograms=False)
    assert not np.any(ranges.clipping(max_stats, *ranges.max_ranges(max_stats)))


def test_the_range_warning_fires_on_either_floor_and_says_which() -> None:
    """Warned when one tensor's clipping caps it under 30 dB (even if the 16-image check looks fine: "but"),
    or when the model keeps under 22 dB with nothing clipping much (the loss is rounding); silent otherwise."""
    from zooflow.toolchains.rangecheck import CLIP_FLOOR_DB, RANGE_FLOOR_DB, range_warning

    worst = {"tensor": "/conv/Conv_output_0", "clipped_pct": 14.38, "clip_sqnr_db": 4.07}
    clips = {"worst": [worst], "floor_db": RANGE_FLOOR_DB}
    mild = {"worst": [{**worst, "clipped_pct": 0.01, "clip_sqnr_db": CLIP_FLOOR_DB + 10}], "floor_db": RANGE_FLOOR_DB}
    good, bad = (
        {"sqnr_float_db": RANGE_FLOOR_DB + 12, "images": 16},
        {"sqnr_float_db": RANGE_FLOOR_DB - 8, "images": 16},
    )

    assert range_warning("mse", good, mild) is None
    assert range_warning("mse", good, {"worst": [], "floor_db": RANGE_FLOOR_DB}) is None
    hidden = range_warning("kl_divergence", good, clips)
    assert hidden is not None and hidden.startswith("int8-kl_divergence keeps 34.0 dB")
    assert "; but the range of /conv/Conv_output_0 clips 14.38%" in hidden and "caps that tensor at 4.1 dB" in hidden
    assert "int8-mse" in hidden and "int8-mixed" in hidden
    shown = range_warning("percentile", bad, clips)
    assert shown is not None and "keeps 14.0 dB" in shown and "; the range of /conv" in shown
    assert "raise --percentile" in shown
    rounding = range_warning("max", bad, mild)
    assert rounding is not None and "no range clips much" in rounding and "/conv" not in rounding


@pytest.mark.parametrize(
    ("scale", "zero_point", "dtype"), [(0.05, 128, "uint8"), (1 / 255, 0, "uint8"), (0.2, -3, "int8")]
)
def test_used_ranges_are_what_ort_saturates_to(tmp_path: Any, scale: float, zero_point: int, dtype: str) -> None:
    """The range read from a QuantizeLinear node is where ONNX Runtime's Q -> DQ saturates: far values come
    back exactly at its ends (the reference is ORT itself, not our formula)."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from zooflow.toolchains.rangecheck import used_ranges

    graph = helper.make_graph(
        [
            helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["q"]),
            helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["y"]),
        ],
        "qdq",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])],
        [
            numpy_helper.from_array(np.array(scale, np.float32), "s"),
            numpy_helper.from_array(np.array(zero_point, getattr(np, dtype)), "zp"),
        ],
    )
    path = tmp_path / "qdq.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    (y,) = ort.InferenceSession(str(path)).run(None, {"x": np.array([-1e9, 0.0, 1e9], np.float32)})
    low, high = used_ranges(path)["x"]
    assert y[1] == 0.0 and low == pytest.approx(float(y[0]), rel=1e-6) and high == pytest.approx(float(y[2]), rel=1e-6)
