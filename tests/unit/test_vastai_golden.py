"""Golden tests: the vendor's published mmcls ShuffleNetV1 files (tests/fixtures/vastai) against
the emulator and zooflow's writers.

(a) the emulator accepts every published file; (b) zooflow writes the same fields and values for
the same model (paths and names aside); (c) the emulator rejects every mutated copy: each enum,
each DType, a missing key, a wrong order, an unknown (misspelled) key, a wrong type.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import vastai_emulator as emu
from zooflow.config import QuantSpec
from zooflow.toolchains import ToolError
from zooflow.toolchains.vastai_schema import dump, percentile_used, vamc_config, vdsp_params

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "vastai"
# mmcls ShuffleNetV1's test pipeline, as zooflow reads it from the mmcls config
PRE = {"resize": [256, -1], "crop": [224, 224], "mean": [123.675, 116.28, 103.53], "std": [58.395, 57.12, 57.375]}


def _yaml(name: str) -> dict[str, Any]:
    return yaml.safe_load((FIXTURES / name).read_text())


def _json(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def _with_paths(config: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    """The published config with its paths pointed at real files here."""
    config = copy.deepcopy(config)
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"onnx")
    images = tmp_path / "calib"
    images.mkdir(exist_ok=True)
    for i in range(1000):
        (images / f"{i}.JPEG").touch()
    if "model" in config:
        config["model"]["checkpoint"], config["dataset"]["path"] = str(onnx), str(images)
    else:
        config["frontend"]["checkpoint"], config["dataset"]["path"] = str(onnx), str(images)
    return config


# ------------------------------------------------------------------ (a) the emulator accepts them
def test_the_emulator_accepts_the_published_configs(tmp_path: Path) -> None:
    _, prefix, dtype = emu._validate_v2(_with_paths(_yaml("v2-mmcls_shufflenet_v1.yaml"), tmp_path))
    assert dtype == "int8" and prefix.name == "shufflenet_v1"
    assert prefix.parent.name == "shufflenet_v1-int8-max-3_224_224-vacc"  # the 2023 layout of the shared doc
    _, _, dtype = emu._validate_v2(_with_paths(_yaml("v2-fp16-ppcls_esnet.yaml"), tmp_path))
    assert dtype == "fp16"
    _, prefix, dtype = emu._validate_v3(_with_paths(_yaml("v3-mmcls_shufflenet_v1.yaml"), tmp_path))
    assert dtype == "int8" and prefix.parts[-2:] == ("mmcls_shufflenetv1_int8", "mod")


@pytest.mark.parametrize("name", ["v2-mmcls-shufflenet_v1-vdsp_params.json", "v3-mmcls-shufflenet_v1-vdsp_params.json"])
def test_the_emulator_accepts_the_published_vdsp_params(name: str) -> None:
    dsp = emu.validate_vdsp(_json(name))
    assert dsp["resize"] == (256, 256) and dsp["crop"] == (224, 224) and dsp["at"] == (16, 16)
    assert dsp["mean"] == [123.6875, 116.25, 103.5] and dsp["std"] == [58.40625, 57.125, 57.375]
    assert dsp["norm"] == "MINUSMEAN_DIVSTD" and dsp["swap"] is False


# ------------------------------------------------- (b) zooflow writes what the vendor published
def _config(generation: str, preset: str, count: int) -> dict[str, Any]:
    config = vamc_config(
        generation,  # type: ignore[arg-type]
        name="shufflenet_v1",
        onnx_path=Path("/x/model.onnx"),
        input_shape=[1, 3, 224, 224],
        quant=QuantSpec.from_preset(preset),
        preprocess=PRE,
        calibration_dir=Path("/x/calib"),
        calibration_count=count,
        suffix="JPEG",
        workspace=Path("deploy_weights"),
    )
    return yaml.safe_load(yaml.safe_dump(dump(config)))  # exactly what is written to vamc_config.yaml


def _paths_aside(config: dict[str, Any]) -> dict[str, Any]:
    config = copy.deepcopy(config)
    for section, key in (("model", "checkpoint"), ("frontend", "checkpoint"), ("dataset", "path")):
        config.get(section, {}).pop(key, None)
    config.get("workspace", {}).pop("work_dir", None)
    config.get("workspace", {}).pop("path", None)
    config.pop("name", None)  # v3: the config's name is ours to choose
    config.get("model", {}).pop("name", None)
    return config


def test_zooflow_writes_the_published_v2_config_field_by_field() -> None:
    assert _paths_aside(_config("v2", "int8-max", 1000)) == _paths_aside(_yaml("v2-mmcls_shufflenet_v1.yaml"))


def test_zooflow_writes_the_published_v3_config_field_by_field() -> None:
    assert _paths_aside(_config("v3", "int8-max", 50)) == _paths_aside(_yaml("v3-mmcls_shufflenet_v1.yaml"))


def test_v2_fp16_keeps_calibration_and_dataset_as_the_published_fp16_configs() -> None:
    published, ours = _yaml("v2-fp16-ppcls_esnet.yaml"), _config("v2", "fp16", 1000)
    assert ours.keys() == published.keys() and ours["engine"].keys() == published["engine"].keys()
    assert ours["engine"]["common"] == published["engine"]["common"] == {"do_quantization": False}
    assert ours["engine"]["calibration"].keys() == published["engine"]["calibration"].keys()
    assert ours["dataset"].keys() == published["dataset"].keys()


@pytest.mark.parametrize("generation", ["v2", "v3"])
def test_zooflow_writes_the_published_vdsp_params_exactly(generation: str) -> None:
    published = _json(f"{generation}-mmcls-shufflenet_v1-vdsp_params.json")
    ours = vdsp_params(generation, PRE)  # type: ignore[arg-type]
    assert ours == published
    assert json.dumps(ours) == json.dumps(published)  # the same keys in the same order, too


def test_a_bgr_model_gets_the_published_colour_conversion() -> None:
    bgr = {**PRE, "to_rgb": False}
    v2 = {p["Property"]: p["Value"] for p in vdsp_params("v2", bgr)["config"]}
    assert v2["color_cvt_code"] == "COLOR_BGR2RGB"  # as the vendor's megvii (BGR) shufflenet_v2 files
    assert vdsp_params("v3", bgr)["OpConfig"]["ColorCvtCode"] == "BGR2RGB"
    assert emu.validate_vdsp(vdsp_params("v2", bgr))["swap"] and emu.validate_vdsp(vdsp_params("v3", bgr))["swap"]


def test_percentiles_no_classification_config_can_express_are_refused_in_v2_and_v3() -> None:
    """No published classification config, v2 or v3, has a key for the percentile (v3's calibrate_range is
    only in the zoo's NLP configs, with calibrate_mode max): a non-default one is refused in both, and the
    default writes exactly the published quantize keys."""
    spec = QuantSpec(dtype="int8", calibrate="percentile", percentile=99.99)
    kwargs: dict[str, Any] = {
        "name": "m",
        "onnx_path": Path("m.onnx"),
        "input_shape": [1, 3, 224, 224],
        "quant": spec,
        "preprocess": PRE,
        "calibration_dir": Path("c"),
        "calibration_count": 1,
        "suffix": "JPEG",
        "workspace": Path("w"),
    }
    for generation in ("v2", "v3"):
        with pytest.raises(
            ToolError, match=rf"vamc {generation} classification configs cannot express a percentile of 99\.99"
        ):
            vamc_config(generation, **kwargs)  # type: ignore[arg-type]
    default = {**kwargs, "quant": QuantSpec.from_preset("int8-percentile")}
    assert dump(vamc_config("v2", **default))["engine"]["calibration"] == {
        "quant_mode": "percentile",
        "per_channel": True,
    }
    quantize = dump(vamc_config("v3", **default))["backend"]["quantize"]
    assert quantize == {"calibrate_mode": "percentile", "quantize_per_channel": True}  # the published key set


def test_calibrate_range_is_written_only_when_passed_and_only_where_vamc_v3_has_it() -> None:
    """The escape the refusal names: the user passes v3's calibrate_range (a key of the zoo's v3 NLP configs)
    and it is written as given. v2 has no such key, fp16 has no quantize block, and a --percentile that
    disagrees with it is refused."""
    kwargs: dict[str, Any] = {
        "name": "m",
        "onnx_path": Path("m.onnx"),
        "input_shape": [1, 3, 224, 224],
        "preprocess": PRE,
        "calibration_dir": Path("c"),
        "calibration_count": 1,
        "suffix": "JPEG",
        "workspace": Path("w"),
    }
    wanted = QuantSpec(dtype="int8", calibrate="percentile", percentile=99.99)
    written = dump(vamc_config("v3", quant=wanted, calibrate_range=0.9999, **kwargs))
    assert written["backend"]["quantize"] == {
        "calibrate_mode": "percentile",
        "quantize_per_channel": True,
        "calibrate_range": 0.9999,
    }
    assert percentile_used("v3", wanted, 0.9999).startswith("calibrate_range 0.9999")  # type: ignore[union-attr]
    with pytest.raises(ToolError, match="v2 config has no such key"):
        vamc_config("v2", quant=wanted, calibrate_range=0.9999, **kwargs)
    with pytest.raises(ToolError, match="fp16 has no quantize block"):
        vamc_config("v3", quant=QuantSpec.from_preset("fp16"), calibrate_range=0.9999, **kwargs)
    with pytest.raises(ToolError, match="disagree"):
        vamc_config("v3", quant=wanted, calibrate_range=0.999, **kwargs)
    with pytest.raises(ToolError, match=r"--vamc-calibrate-range 0\.9999"):  # the refusal names the escape
        vamc_config("v3", quant=wanted, **kwargs)


# ----------------------------------------------------------- (c) mutated copies are rejected
V2_VDSP = "v2-mmcls-shufflenet_v1-vdsp_params.json"
V3_VDSP = "v3-mmcls-shufflenet_v1-vdsp_params.json"
# plausible wrong values: the ones zooflow used to write, the other generation's spelling, case
WRONG_ENUMS = {
    "iimage_format": ["RGB", "rgb_planar"],
    "norma_type": ["MINUSMEAN", "DIV255"],  # DIV255 is v3's
    "resize_type": ["BILINEAR", "bilinear_cv"],
    "color_cvt_code": ["NO_CHANGE", "BGR2RGB"],  # v3's spellings
    "color_space": ["RGB", "BT709"],
}


def _v2_mutations() -> list[tuple[str, dict[str, Any]]]:
    base = _json(V2_VDSP)
    out = []
    for i, entry in enumerate(base["config"]):
        prop = entry["Property"]
        for wrong in WRONG_ENUMS.get(prop, []):
            doc = copy.deepcopy(base)
            doc["config"][i]["Value"] = wrong
            out.append((f"{prop}={wrong}", doc))
        for dtype in sorted({"UINT_32", "INT", "UINT_16", "UINT_8"} - {entry["DType"]}):
            doc = copy.deepcopy(base)
            doc["config"][i]["DType"] = dtype
            out.append((f"{prop}.DType={dtype}", doc))
        for key in entry:
            doc = copy.deepcopy(base)
            del doc["config"][i][key]
            out.append((f"{prop} without {key}", doc))
    doc = copy.deepcopy(base)
    doc["config"][1], doc["config"][2] = doc["config"][2], doc["config"][1]
    out.append(("width/height swapped in order", doc))
    doc = copy.deepcopy(base)
    del doc["config"][-1]
    out.append(("color_space missing", doc))
    doc = copy.deepcopy(base)
    doc["config"][1]["Value"] = "256"
    out.append(("iimage_width as a string", doc))
    doc = copy.deepcopy(base)
    doc["config"][0]["ParamType"] = "ARRAY"
    out.append(("ParamType ARRAY", doc))
    doc = copy.deepcopy(base)
    doc["vdsp_op_type"] = "RGB_RESIZE_CROP"
    out.append(("op type", doc))
    return out


def _v3_mutations() -> list[tuple[str, dict[str, Any]]]:
    base = _json(V3_VDSP)
    out = []
    for key, wrongs in {
        "IimageFormat": ["RGB", "BGR_PLANAR"],
        "NormaType": ["MINUSMEAN", "minusmean_divstd"],
        "ColorCvtCode": ["COLOR_NO_CHANGE", "RGB2RGB"],  # v2's spelling
        "ResizeType": ["BILINEAR_OPENCV", "NEAREST"],
    }.items():
        for wrong in wrongs:
            doc = copy.deepcopy(base)
            doc["OpConfig"][key] = wrong
            out.append((f"{key}={wrong}", doc))
    for key in base["OpConfig"]:
        doc = copy.deepcopy(base)
        del doc["OpConfig"][key]
        out.append((f"without {key}", doc))
    for key, wrong in (("IimageWidth", "256"), ("CropX", 16.0), ("Mean", [123.6875, 116.25]), ("Std", "57.375")):
        doc = copy.deepcopy(base)
        doc["OpConfig"][key] = wrong
        out.append((f"{key}={wrong!r}", doc))
    doc = copy.deepcopy(base)
    doc["OpConfig"]["ColourCvtCode"] = doc["OpConfig"].pop("ColorCvtCode")
    out.append(("misspelled ColorCvtCode", doc))
    doc = copy.deepcopy(base)
    doc["OpType"] = "FUSION_OP_RGB_RESIZE_CVTCOLOR_NORM_TENSOR"  # the op without a crop
    out.append(("op type", doc))
    return out


@pytest.mark.parametrize(
    ("what", "doc"), _v2_mutations() + _v3_mutations(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_the_emulator_rejects_every_mutated_vdsp_file(what: str, doc: dict[str, Any]) -> None:
    with pytest.raises(emu.Invalid):
        emu.validate_vdsp(doc)


def _config_mutations() -> list[tuple[str, str, Any]]:
    def drop(path: tuple[str, ...]) -> Any:
        def mutate(cfg: dict[str, Any]) -> None:
            node = cfg
            for key in path[:-1]:
                node = node[key]
            del node[path[-1]]

        return mutate

    def rename(path: tuple[str, ...], new: str) -> Any:
        def mutate(cfg: dict[str, Any]) -> None:
            node = cfg
            for key in path[:-1]:
                node = node[key]
            node[new] = node.pop(path[-1])

        return mutate

    def setv(path: tuple[str, ...], value: Any) -> Any:
        def mutate(cfg: dict[str, Any]) -> None:
            node = cfg
            for key in path[:-1]:
                node = node[key]
            node[path[-1]] = value

        return mutate

    v2, v3 = "v2-mmcls_shufflenet_v1.yaml", "v3-mmcls_shufflenet_v1.yaml"
    return [
        (v2, "the zoo's alibrate_mode", rename(("engine", "calibration", "quant_mode"), "alibrate_mode")),
        (v2, "no dataset block", drop(("dataset",))),
        (v2, "no calibration block", drop(("engine", "calibration"))),
        (v2, "quant_mode entropy", setv(("engine", "calibration", "quant_mode"), "entropy")),
        (v2, "do_quantization as text", setv(("engine", "common", "do_quantization"), "true")),
        (v2, "engine type tvm", setv(("engine", "type"), "tvm")),
        (v2, "an unknown transform op", setv(("dataset", "transform_ops", 1, "type"), "ResizeShort")),
        (v3, "the zoo's alibrate_mode", rename(("backend", "quantize", "calibrate_mode"), "alibrate_mode")),
        (v3, "no quantize block for int8", drop(("backend", "quantize"))),
        (v3, "dtype int16", setv(("backend", "dtype"), "int16")),
        (v3, "frontend type pytorch", setv(("frontend", "type"), "pytorch")),
        (v3, "shape of three", setv(("frontend", "shape", "input"), [3, 224, 224])),
        (v3, "no workspace", drop(("workspace",))),
    ]


@pytest.mark.parametrize(("name", "what", "mutate"), _config_mutations(), ids=lambda v: v if isinstance(v, str) else "")
def test_the_emulator_rejects_every_mutated_config(name: str, what: str, mutate: Any, tmp_path: Path) -> None:
    config = _with_paths(_yaml(name), tmp_path)
    mutate(config)
    with pytest.raises(emu.Invalid):
        (emu._validate_v2 if name.startswith("v2") else emu._validate_v3)(config)
