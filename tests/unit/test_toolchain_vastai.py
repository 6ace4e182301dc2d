"""The vastai adapter against the vamc/vamp EMULATORS: strict configs, parsing, and failures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.conftest import MODEL
from zooflow import npz, toolchains
from zooflow.config import BenchmarkSpec, QuantSpec, ToolchainOptions
from zooflow.toolchains import ToolError, outputs
from zooflow.toolchains.vastai import find_compiled, pair_outputs, parse_vamp, tool_fingerprint
from zooflow.toolchains.vastai_schema import V2_PROPERTIES, vdsp_params

PRE = {"resize": [256, -1], "crop": [224, 224], "mean": [123.675, 116.28, 103.53], "std": [58.395, 57.12, 57.375]}

DOC_BLOCK = """- number of instances in each device: 8
  devices: [0]
  batch size: 2
  ai utilize (%): 94.4
  temperature (°C): 48.5
  card power (W): 54.7
  die memory used (MB): 1164.75
  throughput (qps): 685.7
  e2e latency (us):
      avg latency: 3551
      min latency: 1444
      max latency: 5715
      p50 latency: 3559
      p90 latency: 5309
      p95 latency: 5347
      p99 latency: 5397
"""


def test_parse_vamp_reads_the_documented_block_field_by_field() -> None:
    parsed = parse_vamp(DOC_BLOCK)
    assert parsed["throughput"] == 685.7 and parsed["batch"] == 2 and parsed["instances"] == 8
    assert parsed["temperature_c"] == 48.5 and parsed["die_memory_mb"] == 1164.75
    assert parsed["e2e_latency_us"] == {
        "avg": 3551,
        "min": 1444,
        "max": 5715,
        "p50": 3559,
        "p90": 5309,
        "p95": 5347,
        "p99": 5397,
    }
    assert "model_latency_us" not in parsed  # absent in this version: not invented
    assert parse_vamp("garbage") == {}


def test_vdsp_params_v2_uses_float16_bit_patterns_in_fixed_order() -> None:
    doc = vdsp_params("v2", PRE)
    assert doc["vdsp_op_type"] == "RGB_RESIZE_CVTCOLOR_CROP_NORMALIZATION_TENSORIZATION_U8"
    assert [p["Property"] for p in doc["config"]] == list(V2_PROPERTIES) and len(V2_PROPERTIES) == 17
    values = {p["Property"]: p["Value"] for p in doc["config"]}
    assert values["meanr"] == 22459  # np.float16(123.675) bit pattern, as the contract states
    assert float(np.uint16(values["meanr"]).view(np.float16)) == 123.6875
    assert (values["short_edge_threshold"], values["crop_size"], values["iimage_format"]) == (256, 224, "RGB_PLANAR")


def test_vdsp_params_v3_crop_offsets_and_rounded_floats() -> None:
    cfg = vdsp_params("v3", PRE)["OpConfig"]
    assert (cfg["ResizeWidth"], cfg["OimageWidth"], cfg["CropX"], cfg["CropY"]) == (256, 224, 16, 16)
    assert cfg["Mean"][0] == 123.6875 and cfg["NormaType"] == "MINUSMEAN_DIVSTD"


def test_pairing_rejects_missing_extra_and_stray_files(tmp_path: Path) -> None:
    for i in range(3):
        np.savez(tmp_path / f"output_{i:06d}.npz", output_0=np.zeros((1, 4)))
    assert [p.name for p in pair_outputs(tmp_path, 3)] == [
        "output_000000.npz",
        "output_000001.npz",
        "output_000002.npz",
    ]
    with pytest.raises(ToolError, match=r"1 beyond the datalist's 2 lines \(first: output_000002.npz\)"):
        pair_outputs(tmp_path, 2)
    with pytest.raises(ToolError, match=r"1 missing \(first: output_000003.npz\)"):
        pair_outputs(tmp_path, 4)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ToolError, match=r"unexpected files: notes\.txt"):
        pair_outputs(tmp_path, 3)


@pytest.fixture
def vastai_npz(toolchain_store):  # type: ignore[no-untyped-def]
    """The same images in the vastai format: image2npz's full-resolution RGB, sizes differ."""
    store, dataset = toolchain_store["store"], toolchain_store["dataset"]
    params = toolchains.get("vastai").input_params(toolchain_store["onnx"].meta["preprocess"])
    assert params.format == "vastai" and params.pre_resize is None
    return npz.build_npz(dataset.limited(20), store, params, shard_size=8, show_progress=False)


def _shards(store, ref):  # type: ignore[no-untyped-def]
    return [store.ref(s["digest"]) for s in json.loads(store.path(ref, "index.json").read_text())["shards"]]


@pytest.mark.parametrize("generation", ["v2", "v3"])
@pytest.mark.parametrize("preset", ["int8-kl_divergence", "fp16"])
def test_compile_run_benchmark_end_to_end(emulators, toolchain_store, vastai_npz, generation, preset) -> None:  # type: ignore[no-untyped-def]
    store = toolchain_store["store"]
    tc = toolchains.require("vastai", ToolchainOptions(vamc_generation=generation))
    compiled = tc.compile(toolchain_store["onnx"], toolchain_store["calibration"], QuantSpec.from_preset(preset), store)
    config = yaml.safe_load(store.path(compiled, "vamc_config.yaml").read_text())
    if generation == "v2":
        assert compiled.meta["prefix"] == "shufflenet_v1_1x_16xb64_in1k"
        assert config["engine"]["common"]["do_quantization"] is (preset != "fp16")
        if preset != "fp16":
            assert config["engine"]["calibration"] == {"quant_mode": "kl_divergence", "per_channel": True}
            assert config["dataset"]["sampler"] == {"suffix": "JPEG", "get_data_num": 36}
    else:
        assert compiled.meta["prefix"] == "mod" and config["backend"]["dtype"] == preset.split("-")[0]
    assert {f"{compiled.meta['prefix']}{s}" for s in (".so", ".json", ".params")} <= set(compiled.files)

    shards = _shards(store, vastai_npz)
    sizes = set()
    for shard in shards:
        for f in store.directory(shard).rglob("*.npz"):
            with np.load(f) as data:
                sizes.add(data["input_0"].shape)
    assert len(sizes) > 3 and all(s[0] == 3 for s in sizes)  # full resolution, as image2npz writes it
    shard_outputs = [tc.run_shard(compiled, s, store) for s in shards]
    done = outputs.assemble(store, shard_outputs, compiled=compiled, npz=vastai_npz, toolchain=tc.fingerprint())
    index, names, rows = outputs.read(store, done)
    assert list(index) == list(range(20)) and names == [r.name for r in toolchain_store["dataset"].records[:20]]
    assert rows.shape == (20, 1000) and rows.dtype == np.float16
    assert shard_outputs[0].meta["vamp"]["batch"] == 22

    bench = tc.benchmark(compiled, BenchmarkSpec(batch_sizes=(2,)), store)
    row = bench.meta["results"][0]
    assert row["batch"] == 2 and row["throughput"] > 0 and set(row["latency_ms"]) >= {"p50", "p99"}
    assert "throughput (qps)" in store.path(bench, "vamp-b2.log").read_text()  # raw text kept


def _intact(store) -> None:  # type: ignore[no-untyped-def]
    assert all(not store.verify(d) for d in store.digests()), "earlier artifacts must survive a tool failure"


@pytest.mark.parametrize(
    ("fault", "needle"),
    [
        ("exit", "vamc exited with status 3; last output:"),
        ("missing", "-3_224_224-vacc/shufflenet_v1_1x_16xb64_in1k: so, json; missing params"),
        ("empty", "shufflenet_v1_1x_16xb64_in1k: so (empty), json, params"),
        ("twice", "holds 2 complete compiled models, so which one is this compile's is ambiguous"),
    ],
)
def test_vamc_failures_are_typed_errors_with_the_log_kept(
    emulators, toolchain_store, monkeypatch, fault, needle
) -> None:  # type: ignore[no-untyped-def]
    store = toolchain_store["store"]
    monkeypatch.setenv("VASTAI_EMULATOR_FAULT", fault)
    with pytest.raises(ToolError) as exc:
        toolchains.get("vastai").compile(
            toolchain_store["onnx"], toolchain_store["calibration"], QuantSpec.from_preset("int8-max"), store
        )
    assert needle in exc.value.problem
    kept = exc.value.problem.rsplit("kept as artifact ", 1)[1].rstrip(")")
    log = store.resolve(kept)
    assert log.kind == "tool-log" and "vamc emulator" in store.path(log).read_text()
    _intact(store)


def test_vamc_timeout_kills_the_tool(emulators, toolchain_store, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("VASTAI_EMULATOR_FAULT", "hang")
    tc = toolchains.get("vastai", ToolchainOptions(vamc_timeout=3))
    with pytest.raises(ToolError, match="vamc did not finish within 3 s and was stopped"):
        tc.compile(
            toolchain_store["onnx"],
            toolchain_store["calibration"],
            QuantSpec.from_preset("fp16"),
            toolchain_store["store"],
        )


@pytest.mark.parametrize(
    ("fault", "needle"),
    [
        ("exit", "vamp exited with status 4"),
        ("missing", "vamp's outputs do not pair with the datalist of 8 lines: 1 missing (first: output_000004.npz)"),
        ("stale", "1 beyond the datalist's 8 lines (first: output_000008.npz), stale or extra"),
        ("hang", "vamp did not finish within 3 s"),
    ],
)
def test_vamp_run_failures(emulators, toolchain_store, vastai_npz, monkeypatch, fault, needle) -> None:  # type: ignore[no-untyped-def]
    store = toolchain_store["store"]
    compiled = toolchains.get("vastai").compile(
        toolchain_store["onnx"], toolchain_store["calibration"], QuantSpec.from_preset("fp16"), store
    )
    monkeypatch.setenv("VASTAI_EMULATOR_FAULT", fault)
    with pytest.raises(ToolError) as exc:
        toolchains.get("vastai", ToolchainOptions(vamp_timeout=3)).run_shard(
            compiled, _shards(store, vastai_npz)[0], store
        )
    assert needle in exc.value.problem
    _intact(store)


def test_garbled_vamp_output_is_an_error_not_a_zero(emulators, toolchain_store, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    store = toolchain_store["store"]
    compiled = toolchains.get("vastai").compile(
        toolchain_store["onnx"], toolchain_store["calibration"], QuantSpec.from_preset("fp16"), store
    )
    monkeypatch.setenv("VASTAI_EMULATOR_FAULT", "garbled")
    with pytest.raises(ToolError, match=r"vamp's output has no 'throughput \(qps\)' field"):
        toolchains.get("vastai").benchmark(compiled, BenchmarkSpec(batch_sizes=(2,)), store)


def test_fp32_is_refused_and_fingerprint_reports_versions(emulators, toolchain_store, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ToolError, match="vamc compiles fp16 and int8 only"):
        toolchains.get("vastai").compile(
            toolchain_store["onnx"], None, QuantSpec.from_preset("fp32"), toolchain_store["store"]
        )
    assert toolchains.get("vastai").fingerprint()["vamc"] == "vastai-emulator 1.0"
    monkeypatch.setenv("VASTAI_EMULATOR_VERSION", "vastai-emulator 2.0")
    assert toolchains.get("vastai").fingerprint()["vamc"] == "vastai-emulator 2.0"
    assert MODEL in toolchain_store["onnx"].name


def test_the_emulator_rejects_the_zoos_misspelled_key(emulators, toolchain_store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The public zoo ships `alibrate_mode`; the real vamc may ignore it silently, the emulator must not."""
    import subprocess

    store = toolchain_store["store"]
    compiled = toolchains.get("vastai").compile(
        toolchain_store["onnx"], toolchain_store["calibration"], QuantSpec.from_preset("int8-max"), store
    )
    config = yaml.safe_load(store.path(compiled, "vamc_config.yaml").read_text())
    config["engine"]["calibration"]["alibrate_mode"] = config["engine"]["calibration"].pop("quant_mode")
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(config))
    done = subprocess.run(["vamc", "build", "bad.yaml"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 2 and "unknown key(s) ['alibrate_mode']" in done.stderr


@pytest.mark.parametrize(
    ("generation", "layout", "found"),
    [
        ("v2", "2023", "shufflenet_v1_1x_16xb64_in1k-int8-max-3_224_224-vacc/shufflenet_v1_1x_16xb64_in1k"),
        ("v2", "seed", "shufflenet_v1_1x_16xb64_in1k-int8-max-3_256_256-vacc/shufflenet_v1_1x_16xb64_in1k"),
        ("v2", "2024", "shufflenet_v1_1x_16xb64_in1k-int8-max-1_1_256_256-vacc/mod"),
        ("v3", "v3", "shufflenet_v1_1x_16xb64_in1k_int8_max/mod"),
    ],
)
def test_the_compiled_model_is_found_in_every_known_layout(  # type: ignore[no-untyped-def]
    emulators, toolchain_store, vastai_npz, monkeypatch, generation, layout, found
) -> None:
    store = toolchain_store["store"]
    monkeypatch.setenv("VASTAI_EMULATOR_LAYOUT", layout)
    tc = toolchains.get("vastai", ToolchainOptions(vamc_generation=generation))
    compiled = tc.compile(
        toolchain_store["onnx"], toolchain_store["calibration"], QuantSpec.from_preset("int8-max"), store
    )
    assert compiled.meta["layout"] == f"deploy_weights/{found}" and compiled.meta["prefix"] == found.rsplit("/", 1)[1]
    shard = tc.run_shard(compiled, _shards(store, vastai_npz)[0], store)  # vamp is pointed at the stored prefix
    assert shard.meta["vamp"]["batch"] == 22


def test_find_compiled_lists_what_it_found_when_incomplete_or_ambiguous(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    for suffix in (".so", ".json"):
        (tmp_path / "a" / f"mod{suffix}").write_text("x")
    (tmp_path / "a" / "config.json").write_text("{}")  # a lone json is not a candidate
    with pytest.raises(ToolError, match=r"found under .*: a/mod: so, json; missing params\n"):
        find_compiled(tmp_path)
    (tmp_path / "a" / "mod.params").write_text("")
    with pytest.raises(ToolError, match=r"a/mod: so, json, params \(empty\)"):
        find_compiled(tmp_path)
    (tmp_path / "a" / "mod.params").write_text("w")
    assert find_compiled(tmp_path) == tmp_path / "a" / "mod"
    (tmp_path / "b").mkdir()
    for suffix in (".so", ".json", ".params"):
        (tmp_path / "b" / f"net{suffix}").write_text("x")
    with pytest.raises(ToolError, match=r"2 complete compiled models.*ambiguous: a/mod; b/net"):
        find_compiled(tmp_path)


def _vamp_command(store, ref) -> str:  # type: ignore[no-untyped-def]
    return store.path(ref, "vamp-b2.log").read_text().splitlines()[0]


def test_vamp_gets_the_shape_on_v3_only_and_a_device_only_when_asked(emulators, toolchain_store) -> None:  # type: ignore[no-untyped-def]
    store = toolchain_store["store"]
    calib, onnx = toolchain_store["calibration"], toolchain_store["onnx"]
    compiled = toolchains.get("vastai").compile(onnx, calib, QuantSpec.from_preset("fp16"), store)
    plain = toolchains.get("vastai").benchmark(compiled, BenchmarkSpec(batch_sizes=(2,)), store)
    words = _vamp_command(store, plain).split()
    assert "-s" not in words and "-d" not in words  # as the seed runs it
    assert words[words.index("-i") + 1 : words.index("-i") + 6] == ["8", "-p", "1", "-b", "2"]
    asked = ToolchainOptions(vamp_args=("-s", "[3,224,224]"), device=1)  # the zoo's speed-run flags
    ref = toolchains.get("vastai", asked).benchmark(compiled, BenchmarkSpec(batch_sizes=(2,)), store)
    assert _vamp_command(store, ref).endswith("-b 2 -d 1 -s [3,224,224]")
    wrong = ToolchainOptions(vamp_args=("-s", "[3,256,256]"))  # what zooflow used to pass
    with pytest.raises(ToolError, match=r"-s \[3,256,256\]: expected the model's input shape \[3, 224, 224\]"):
        toolchains.get("vastai", wrong).benchmark(compiled, BenchmarkSpec(batch_sizes=(2,)), store)
    with pytest.raises(ValueError, match="vamp_args may not set -b"):
        ToolchainOptions(vamp_args=("-b", "4"))
    # v3: every v3-era mmcls page of the zoo passes the model's input shape, on the speed and datalist runs
    v3 = toolchains.get("vastai", ToolchainOptions(vamc_generation="v3"))
    compiled_v3 = v3.compile(onnx, calib, QuantSpec.from_preset("fp16"), store)
    words = _vamp_command(store, v3.benchmark(compiled_v3, BenchmarkSpec(batch_sizes=(2,)), store)).split()
    assert words[words.index("-s") + 1] == "[3,224,224]" and words.count("-s") == 1


def test_the_emulated_dsp_on_full_size_images_is_zooflows_device_dsp(emulators, toolchain_store, vastai_npz) -> None:  # type: ignore[no-untyped-def]
    """vamp's outputs from full-size npz equal the model on `Transform.device_dsp` crops of the same files."""
    from zooflow.preprocess import Transform
    from zooflow.toolchains.onnxruntime import session

    store, onnx = toolchain_store["store"], toolchain_store["onnx"]
    compiled = toolchains.get("vastai").compile(
        onnx, toolchain_store["calibration"], QuantSpec.from_preset("fp16"), store
    )
    shard = _shards(store, vastai_npz)[0]
    ref = toolchains.get("vastai").run_shard(compiled, shard, store)
    got = outputs.load_npz(store.path(ref, "outputs.npz"), ("output_0",))["output_0"].astype(np.float32)
    dsp = Transform.device_dsp(onnx.meta["preprocess"])
    views = []
    for _, name, _, _ in outputs.shard_records(store, shard):
        rgb, _ = npz.decode_like_cv2((Path(toolchain_store["dataset"].root) / name).read_bytes())
        views.append(dsp.normalize(dsp.crop_uint8(rgb)))
    sess = session(store.path(onnx))
    want = np.asarray(sess.run(None, {sess.get_inputs()[0].name: np.stack(views)})[0])
    np.testing.assert_allclose(got, want.astype(np.float16).astype(np.float32), rtol=0, atol=1e-2)


def test_a_pip_installed_vamc_is_identified_by_its_distribution(emulators, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Its wrapper script is the same for every version and it has no --version: the RECORD tells them apart."""
    from tests.support import pip_tool

    if pip_tool.uv() is None:
        pytest.skip("uv is not installed here (CI installs it): cannot pip-install the packaged emulator")
    venv = pip_tool.make_venv(tmp_path / "venv")
    script = pip_tool.install(venv, pip_tool.build_wheel(tmp_path / "wheels", "1.0"))
    monkeypatch.setenv("PATH", f"{venv}:{emulators}:/usr/bin:/bin")
    first = tool_fingerprint("vamc")
    wrapper = script.read_bytes()
    pip_tool.install(venv, pip_tool.build_wheel(tmp_path / "wheels", "2.0"))
    second = tool_fingerprint("vamc")
    assert script.read_bytes() == wrapper  # hashing the executable would have missed the upgrade
    assert first[0].startswith("vamc-emulated 1.0 (RECORD sha256:") and second[0].startswith("vamc-emulated 2.0")
    assert first[1] == second[1] == "installed distribution (importlib.metadata)"
    assert tool_fingerprint("vamp") == ("vastai-emulator 1.0", "--version")
    fp = toolchains.get("vastai").fingerprint()
    assert fp["vamc_source"] == "installed distribution (importlib.metadata)" and fp["vamp_source"] == "--version"


@pytest.mark.parametrize("generation", ["v2", "v3"])
def test_int8_mixed_passes_its_float_convs_as_skip_conv_layers(emulators, toolchain_store, generation) -> None:  # type: ignore[no-untyped-def]
    """The layers int8-mixed keeps in float reach vamc as the published key of each generation (v2:
    engine.calibration.skip_conv_layers, v3: backend.quantize.skip_conv_layers), by the Conv's position
    among the ONNX file's Conv nodes (counted here from the file itself); the Gemm (fc) has no published
    key, nor do a residual Add or the model's input (layers of the ranking too): each is reported as not
    passed, with the reason."""
    import onnx

    store, onnx_ref = toolchain_store["store"], toolchain_store["onnx"]
    exported = onnx.load(str(store.path(onnx_ref))).graph
    nodes, image = list(exported.node), exported.input[0].name
    convs = [n.name for n in nodes if n.op_type == "Conv"]
    gemm = next(n.name for n in nodes if n.op_type == "Gemm")
    add = next(n.name for n in nodes if n.op_type == "Add")
    kept = [convs[7], gemm, convs[0], add, image]
    quant = QuantSpec.from_preset("int8-mixed").model_copy(update={"keep_float": 5})
    tc = toolchains.get("vastai", ToolchainOptions(vamc_generation=generation))
    compiled = tc.compile(onnx_ref, toolchain_store["calibration"], quant, store, float_layers=kept)
    config = yaml.safe_load(store.path(compiled, "vamc_config.yaml").read_text())
    block = config["engine"]["calibration"] if generation == "v2" else config["backend"]["quantize"]
    assert block["skip_conv_layers"] == [0, 7] and "skip_matmul_layers" not in block
    graph = json.loads(store.path(compiled, compiled.meta["prefix"] + ".json").read_text())
    assert graph["skipped"] == {"skip_conv_layers": [0, 7]}  # what the emulated vamc read
    meta = compiled.meta["float_layers"]
    assert [(p["node"], p["index"]) for p in meta["passed"]] == [(convs[7], 7), (convs[0], 0)]
    listed = "Conv" if generation == "v2" else "Conv and MatMul"
    why = f"vamc {generation} configs have no key to keep a {{}} node in float (their skip lists take {listed} nodes only)"
    assert meta["refused"] == [
        {"node": gemm, "op": "Gemm", "reason": why.format("Gemm")},
        {"node": add, "op": "Add", "reason": why.format("Add")},
        {
            "node": image,
            "op": None,
            "reason": f"vamc {generation} configs have no key to leave the model's input in float",
        },
    ]
    assert compiled.name.endswith("/vastai/int8-mixed-k5")
    # the all-int8 compile of the same spec writes no skip list
    plain = tc.compile(onnx_ref, toolchain_store["calibration"], quant.base(), store)
    plain_config = yaml.safe_load(store.path(plain, "vamc_config.yaml").read_text())
    plain_block = plain_config["engine"]["calibration"] if generation == "v2" else plain_config["backend"]["quantize"]
    assert "skip_conv_layers" not in plain_block and "float_layers" not in plain.meta


def test_the_emulator_rejects_a_skip_list_that_is_not_indices(emulators, toolchain_store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import subprocess

    store = toolchain_store["store"]
    compiled = toolchains.get("vastai").compile(
        toolchain_store["onnx"], toolchain_store["calibration"], QuantSpec.from_preset("int8-max"), store
    )
    config = yaml.safe_load(store.path(compiled, "vamc_config.yaml").read_text())
    config["engine"]["calibration"]["skip_conv_layers"] = ["backbone.conv1"]
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(config))
    done = subprocess.run(["vamc", "build", "bad.yaml"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 2 and "skip_conv_layers: expected a list of distinct non-negative integers" in done.stderr


def test_a_tools_fingerprint_is_asked_once_until_the_tool_or_environment_changes(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Each task asks for the fingerprint; the tool is started again only when its file or the environment changes."""
    calls = tmp_path / "calls"
    tool = tmp_path / "bin" / "vamp"
    tool.parent.mkdir()

    def write(version: str) -> None:
        tool.write_text(f'#!/bin/sh\necho started >> "{calls}"\necho "vamp {version} $ZF_FLAVOUR"\n')
        tool.chmod(0o755)

    write("1.0")
    monkeypatch.setenv("PATH", f"{tool.parent}:/usr/bin:/bin")
    monkeypatch.setenv("ZF_FLAVOUR", "a")
    assert [tool_fingerprint("vamp") for _ in range(3)] == [("vamp 1.0 a", "--version")] * 3
    assert calls.read_text().count("started") == 1
    write("2.0")  # an upgrade on disk
    assert tool_fingerprint("vamp") == ("vamp 2.0 a", "--version")
    monkeypatch.setenv("ZF_FLAVOUR", "b")  # an answer that depends on the environment
    assert tool_fingerprint("vamp") == ("vamp 2.0 b", "--version")
    assert calls.read_text().count("started") == 3
