"""Build mmcls classifiers, load checkpoints strictly, and make demo checkpoints.

Importing torch and mmcls costs ~15 s here, so this module imports them inside functions:
the CLI, config validation and the store stay fast.
"""

from __future__ import annotations

import contextlib
import logging
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from zooflow.errors import CheckpointError, UnsafeCheckpointError
from zooflow.registry import ModelInfo

INIT_STAGE_VERSION = "1"


@contextlib.contextmanager
def quiet_mm() -> Iterator[None]:
    """Silence mmcv/mmcls import warnings and per-parameter init logging (hundreds of lines)."""
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        import torch

        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        from mmcv.utils import get_logger

        get_logger("mmcv").setLevel(logging.WARNING)
        yield


def load_config(info: ModelInfo) -> Any:
    """The model's mmcv Config (from mmcls's bundled configs)."""
    with quiet_mm():
        import mmcv

        return mmcv.Config.fromfile(str(info.config))


def build_model(info: ModelInfo) -> Any:
    """An mmcls classifier built from the model's config, in eval mode, with default init."""
    cfg = load_config(info)
    with quiet_mm():
        from mmcls.models import build_classifier

        model = build_classifier(cfg.model)
        model.init_weights()
    return model.eval()


def preprocess_spec(info: ModelInfo) -> dict[str, Any]:
    """The test-time preprocessing of the model's config, as plain values.

    Later stages (npz, calibration, vamc configs, vdsp_params) derive their transforms from it.
    """
    cfg = load_config(info)
    spec: dict[str, Any] = {
        "resize": None,
        "resize_backend": "cv2",
        "crop": None,
        "mean": None,
        "std": None,
        "to_rgb": True,
    }
    for step in cfg.data.test.pipeline:
        kind = step["type"]
        if kind == "Resize":
            spec["resize"] = list(step["size"]) if isinstance(step["size"], (list, tuple)) else [step["size"], -1]
            spec["resize_backend"] = step.get("backend", "cv2")
        elif kind == "CenterCrop":
            crop = step["crop_size"]
            spec["crop"] = [crop, crop] if isinstance(crop, int) else list(crop)
        elif kind == "Normalize":
            spec["mean"] = [float(v) for v in step["mean"]]
            spec["std"] = [float(v) for v in step["std"]]
            spec["to_rgb"] = bool(step.get("to_rgb", True))
    if spec["crop"] is None and spec["resize"] is not None and -1 not in spec["resize"]:
        spec["crop"] = list(spec["resize"])
    if spec["crop"] is None or spec["mean"] is None:
        raise CheckpointError(
            f"cannot read the test preprocessing of {info.name} from {info.config}",
            "zooflow supports configs whose test pipeline has CenterCrop (or a fixed Resize) and Normalize",
        )
    return spec


# What mmcls/mmcv checkpoints hold besides tensors and plain containers: numpy scalars, arrays
# and dtypes in `meta` (e.g. a hook's best score). These, and nothing else, are allow-listed for
# torch's weights-only unpickler; a class or function (os.system, a custom object) is refused.
def _allowed_globals() -> list[Any]:
    import numpy as np
    from numpy import dtypes

    core = np._core if hasattr(np, "_core") else np.core  # numpy 2 moved the module
    allowed: list[Any] = [core.multiarray._reconstruct, core.multiarray.scalar, np.ndarray, np.dtype]
    allowed += [getattr(dtypes, name) for name in dir(dtypes) if name.endswith("DType")]
    return allowed


def _allowed_names() -> set[str]:
    names = set()
    for item in _allowed_globals():
        names.add(f"{item.__module__}.{item.__qualname__}")
    return names | {"numpy.core.multiarray._reconstruct", "numpy.core.multiarray.scalar"}


_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # the first pickle of torch's legacy (pre-1.6, non-zip) format


def _legacy_globals(path: Path) -> list[str] | None:
    """``module.name`` of every global that the pickles of a legacy (non-zip) torch file name, read with
    pickletools (nothing in the file is run); None if the file is not in that format.

    Why hand-written: torch's `get_unsafe_globals_in_checkpoint` reads zip files only, so a legacy file
    that names a class could be neither listed nor opted into with --trust-checkpoint.
    """
    import pickletools

    found: list[str] = []
    try:
        with open(path, "rb") as fh:
            # the magic number, the protocol version, sys info, the object, its storage keys; raw data after
            for number in range(5):
                strings: list[str] = []
                for op, arg, _ in pickletools.genops(fh):
                    if number == 0 and op.name != "PROTO" and arg != _LEGACY_MAGIC and op.name != "STOP":
                        return None
                    if op.name == "GLOBAL" and isinstance(arg, str):
                        found.append(arg.replace(" ", "."))
                    elif op.name == "STACK_GLOBAL":
                        found.append(".".join(strings[-2:]) if len(strings) >= 2 else "(unknown global)")
                    elif isinstance(arg, str):
                        strings.append(arg)
    except Exception:  # noqa: BLE001 - pickletools raises several types on bytes that are not a pickle
        return None
    return found


def _torch_allowed_names() -> set[str]:
    """What torch's weights-only unpickler accepts on its own (tensors, storages, OrderedDict, ...)."""
    try:
        from torch import _weights_only_unpickler

        return set(_weights_only_unpickler._get_allowed_globals())
    except Exception:  # noqa: BLE001 - a private helper: without it every global is reported (safe side)
        return set()


def _unsafe_globals(path: Path) -> list[str] | None:
    """Globals the file's pickle names beyond the allow-list; None if the file is not a torch checkpoint."""
    import torch

    try:
        found = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except Exception:  # noqa: BLE001 - truncated, not a zip, not a pickle: perhaps the legacy format
        legacy = _legacy_globals(path)
        if legacy is None:
            return None
        found = list(dict.fromkeys(name for name in legacy if name not in _torch_allowed_names()))
    allowed = _allowed_names()
    return [name for name in found if name not in allowed]


_ANSI_RE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _not_readable(path: Path, exc: BaseException) -> CheckpointError:
    said = " ".join(_ANSI_RE.sub("", str(exc)).split())  # torch's messages carry terminal bold and line breaks
    return CheckpointError(
        f"{path.name} is not a readable PyTorch checkpoint ({type(exc).__name__}: {said[:200]})",
        "fetch it again (the file may be truncated or not a checkpoint at all) or point --checkpoint at a .pth file",
    )


def _finite(path: Path, state: dict[str, Any]) -> None:
    """Refuse weights holding NaN or infinity: a damaged or diverged checkpoint, never the exporter's fault."""
    import torch

    bad = {
        key: int((~torch.isfinite(value)).sum())
        for key, value in state.items()
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all())
    }
    if bad:
        shown = ", ".join(f"{key} ({count})" for key, count in list(bad.items())[:4])
        raise CheckpointError(
            f"{path.name} holds {sum(bad.values())} NaN or infinite weight value(s) in {len(bad)} tensor(s): "
            f"{shown}{' ...' if len(bad) > 4 else ''}; the checkpoint is damaged or its training diverged",
            "use another checkpoint (the published one, or an earlier epoch of your training)",
        )


def read_state_dict(path: Path, *, trust: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
    """(state_dict, meta) of a checkpoint file, loaded without running code unless `trust`.

    torch's weights-only unpickler with numpy's plain types allow-listed reads every mmcls/mmcv
    checkpoint seen so far. A file whose pickle names anything else (a class, a function) is
    refused with `UnsafeCheckpointError` unless the user opted in (``--trust-checkpoint``): full
    unpickling runs whatever code the file names.
    """
    import torch

    meta: dict[str, Any] = {"unpickled": False}
    try:
        with torch.serialization.safe_globals(_allowed_globals()):
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for unreadable files
        unsafe = _unsafe_globals(path)
        if not unsafe:
            raise _not_readable(path, exc) from None
        if not trust:
            raise UnsafeCheckpointError(
                f"{path.name} can only be loaded by full unpickling, which runs code named in the file: it refers to "
                f"{', '.join(unsafe[:6])}{' ...' if len(unsafe) > 6 else ''}, which are not plain weights; zooflow "
                "refused to load it and nothing in it was run",
                "if you trust where this file came from, pass --trust-checkpoint (trust_checkpoint: true); otherwise "
                "ask its publisher for a weights-only file, or re-save it with torch.save({'state_dict': model.state_dict()})",
            ) from None
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=False)  # the user trusts this file
        except Exception as exc2:  # noqa: BLE001 - any failure here means the file is not a checkpoint
            raise _not_readable(path, exc2) from None
        meta = {"unpickled": True, "trusted_by_user": True, "unsafe_globals": unsafe[:20]}
    if not isinstance(ckpt, dict):
        raise CheckpointError(
            f"{path.name} holds a {type(ckpt).__name__}, not a state dict", "pass an mmcls .pth checkpoint"
        )
    state = ckpt.get("state_dict", ckpt)
    if not isinstance(state, dict):
        raise CheckpointError(
            f"{path.name}: its state_dict is a {type(state).__name__}", "pass an mmcls .pth checkpoint"
        )
    state = {k.removeprefix("module."): v for k, v in state.items() if hasattr(v, "shape")}
    if not state:
        raise CheckpointError(
            f"{path.name} holds no tensors: it is not a model checkpoint", "pass an mmcls .pth checkpoint"
        )
    _finite(path, state)
    if isinstance(ckpt.get("meta"), dict):
        meta["checkpoint_meta"] = {k: v for k, v in ckpt["meta"].items() if isinstance(v, (str, int, float, bool))}
    return state, meta


def load_strict(model: Any, path: Path, info: ModelInfo, *, trust: bool = False) -> dict[str, Any]:
    """Load a checkpoint into `model`; any missing, unexpected or mis-shaped key is an error."""
    state, meta = read_state_dict(path, trust=trust)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = sorted(
        f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}"
        for k in set(state) & set(expected)
        if tuple(state[k].shape) != tuple(expected[k].shape)
    )
    if missing or unexpected or mismatched:

        def show(keys: list[str]) -> str:
            return ", ".join(keys[:8]) + (f", ... ({len(keys) - 8} more)" if len(keys) > 8 else "")

        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s): {show(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s): {show(unexpected)}")
        if mismatched:
            parts.append(f"{len(mismatched)} shape mismatch(es): {show(mismatched)}")
        raise CheckpointError(
            f"checkpoint {path.name} does not fit model {info.name}:\n    " + "\n    ".join(parts),
            "check that --model names the architecture this checkpoint was trained with",
        )
    model.load_state_dict(state, strict=True)
    return meta


def init_checkpoint(info: ModelInfo, out: Path, *, seed: int) -> dict[str, Any]:
    """Write a locally initialised checkpoint (no download): seeded init, BN stats re-estimated.

    Weights are random, so accuracy from it is meaningless; BatchNorm running statistics are
    re-estimated on seeded noise so activations (and int8 ranges) have realistic scales.
    """
    import torch

    torch.manual_seed(seed)
    model = build_model(info)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the estimation batches
    size = preprocess_spec(info)["crop"]
    generator = torch.Generator().manual_seed(seed)
    model.train()
    with torch.no_grad():
        for _ in range(4):
            model.extract_feat(torch.randn(16, 3, *size, generator=generator))
    model.eval()
    meta = {
        "locally_initialised": True,
        "seed": seed,
        "warning": "NOT the published weights: randomly initialised from the mmcls config; accuracy from it is meaningless",
    }
    torch.save(
        {"meta": {"zooflow": meta["warning"], "seed": seed, "model": info.name}, "state_dict": model.state_dict()}, out
    )
    return meta
