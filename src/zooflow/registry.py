"""Resolve mmcls model-index names to config, checkpoint URL and published metrics.

mmcls ships its model index under ``mmcls/.mim/`` (``model-index.yml`` importing one metafile
per family). Reading those YAML files directly avoids importing mmcls (and torch), so name
validation in the CLI and the flow parameter model stays fast.
"""

from __future__ import annotations

import difflib
import functools
import importlib.util
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict

from zooflow.errors import UnknownModelError

DEFAULT_MODEL = "shufflenet-v1-1x_16xb64_in1k"


class ModelInfo(BaseModel):
    """One entry of the mmcls model index, with paths made absolute."""

    model_config = ConfigDict(frozen=True)

    name: str
    config: Path
    weights: str | None
    top1: float | None
    top5: float | None
    params: int | None
    flops: int | None
    collection: str | None
    aliases: tuple[str, ...] = ()

    @property
    def family(self) -> str:
        """The config folder name (``shufflenet_v1``), used for artifact names."""
        return self.config.parent.name


def mim_root() -> Path:
    """Location of mmcls's bundled ``.mim`` folder (configs and model index)."""
    spec = importlib.util.find_spec("mmcls")
    if spec is None or not spec.submodule_search_locations:
        raise UnknownModelError(
            "mmcls is not installed, so its model index cannot be read",
            "install the project environment with `uv sync`",
        )
    root = Path(next(iter(spec.submodule_search_locations))) / ".mim"
    if not (root / "model-index.yml").is_file():
        raise UnknownModelError(
            f"mmcls's model index is missing at {root / 'model-index.yml'}",
            "reinstall mmcls==0.25.0 (`uv sync --reinstall-package mmcls`)",
        )
    return root


def _metric(results: list[dict[str, Any]] | None, key: str) -> float | None:
    for result in results or []:
        if result.get("Dataset") == "ImageNet-1k" and key in result.get("Metrics", {}):
            return float(result["Metrics"][key])
    return None


@functools.cache
def load_index() -> dict[str, ModelInfo]:
    """All models of the index by name (cached for the process)."""
    root = mim_root()
    index = yaml.safe_load((root / "model-index.yml").read_text())
    models: dict[str, ModelInfo] = {}
    for metafile in index.get("Import", []):
        meta = yaml.safe_load((root / metafile).read_text()) or {}
        for entry in meta.get("Models", []) or []:
            if "Config" not in entry:
                continue  # pre-training-only weights (e.g. in21k): no config to build from
            metadata = entry.get("Metadata", {}) or {}
            flops = metadata.get("FLOPs")
            params = metadata.get("Parameters")
            info = ModelInfo(
                name=entry["Name"],
                config=root / entry["Config"],
                weights=entry.get("Weights"),
                top1=_metric(entry.get("Results"), "Top 1 Accuracy"),
                top5=_metric(entry.get("Results"), "Top 5 Accuracy"),
                params=int(params) if isinstance(params, (int, float)) else None,
                flops=int(flops) if isinstance(flops, (int, float)) else None,
                collection=entry.get("In Collection"),
                aliases=tuple(entry.get("Alias", []) or []),
            )
            models[info.name] = info
    return models


def resolve(name: str) -> ModelInfo:
    """Look a model up by its index name; an unknown name lists the closest matches."""
    models = load_index()
    if name in models:
        return models[name]
    close = difflib.get_close_matches(name, list(models), n=5, cutoff=0.4)
    if not close:
        # Substring matches help for short queries such as "shufflenet".
        close = [m for m in models if name.lower() in m.lower()][:5]
    hint = f"did you mean: {', '.join(close)}?" if close else "no similar names"
    raise UnknownModelError(
        f"unknown model name {name!r} ({hint})",
        "pass a name from mmcls's model index; `zooflow models` lists all of them",
    )
