"""mmcls model-index lookup."""

from __future__ import annotations

import pytest

from zooflow import registry
from zooflow.errors import UnknownModelError


def test_default_model_resolves_to_config_weights_and_published_metrics() -> None:
    info = registry.resolve(registry.DEFAULT_MODEL)
    assert info.config.is_file()
    assert info.config.name == "shufflenet-v1-1x_16xb64_in1k.py"
    assert info.weights
    assert info.weights.endswith("-5d6cec73.pth")
    assert (info.top1, info.top5) == (68.13, 87.81)
    assert info.params == 1_870_000
    assert info.flops == 146_000_000


def test_index_covers_many_families() -> None:
    names = registry.load_index()
    assert len(names) > 100
    assert {"resnet50_8xb32_in1k", "mobilenet-v2_8xb32_in1k"} <= set(names)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("shufflenet-v1-1x", "shufflenet-v1-1x_16xb64_in1k"),
        ("resnet50_8xb32", "resnet50_8xb32_in1k"),
        ("shufflenet", "shufflenet-v2-1x_16xb64_in1k"),
    ],
)
def test_unknown_name_suggests_close_matches(query: str, expected: str) -> None:
    with pytest.raises(UnknownModelError) as exc:
        registry.resolve(query)
    assert expected in exc.value.problem
    assert "zooflow models" in (exc.value.fix or "")


def test_unrelated_name_says_so() -> None:
    with pytest.raises(UnknownModelError, match="no similar names"):
        registry.resolve("qqqqqq")
