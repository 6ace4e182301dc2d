"""The shipped ImageNet-1k synset list: the facts its header claims, checked against independent sources."""

from __future__ import annotations

from zooflow import demo, imagenet


def test_the_list_is_the_1000_synsets_sorted_with_mmcls_names_at_each_id() -> None:
    synsets = imagenet.synsets()
    assert len(synsets) == len(set(synsets)) == 1000
    assert list(synsets) == sorted(synsets)  # the ILSVRC2012 class ids are the sorted synset ids
    assert all(imagenet.SYNSET_RE.match(s) for s in synsets)
    # mmcls's own ImageNet.CLASSES (parsed from its source) names the same class at every id
    assert imagenet.class_names() == demo.imagenet_class_names()
    assert imagenet.synset_ids()["n01443537"] == 1 and imagenet.class_names()[1].startswith("goldfish")
