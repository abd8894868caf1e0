"""The path between the parts: a model trained by atrous with non-default options drives predict,
export, quantize, eval and bench from its weights file alone, and predict never loses a user's
data."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import atrous
from atrous.cli import main

TINY = {
    "model": {"name": "regseg", "options": {"stem_width": 8, "widths": [8, 16, 16, 16], "depths": [1, 1],
                                            "group_width": 8, "dilations": [[1], [1, 5]],
                                            "decoder_widths": [16, 8, 16]}},
    "data": {"dataset": "toy", "size": 64, "widths": [4, 8], "count": 8, "num_classes": 3,
             "transforms": {"train": {"hflip": 0.5, "crop": [48, 48],
                                      "normalize": {"mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3]}},
                            "val": {"normalize": {"mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3]}}}},
    "train": {"batch_size": 4, "max_iters": 3, "lr": 0.05, "checkpoint_every": 3, "log_every": 1},
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 3-iteration toy run with dilations (1, 5) and its own normalisation, through the CLI."""
    root = tmp_path_factory.mktemp("flow")
    recipe = root / "tiny.yaml"
    recipe.write_text("# Source: test recipe (RegSeg Sec 3.6 toy data)\n" + yaml.safe_dump(TINY))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["train", str(recipe), "--out", str(root / "run")]) == 0
    finally:
        torch.set_num_threads(threads)
    return root, root / "run" / "model.safetensors"


def write_image(path, h, w, seed=0):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)


def test_record_says_how_the_model_was_trained(trained):
    _, weights = trained
    model = atrous.load(weights)
    record = model.record
    assert record.model == "regseg" and record.options["dilations"] == [[1], [1, 5]]
    assert model.backbone.stage16[-1].conv2.conv.dilations == (1, 5)
    assert record.classes == ("background", "rectangle 1", "rectangle 2") and len(record.palette) == 3
    assert record.normalization.mean == (0.5, 0.4, 0.3) and record.train_crop == (48, 48)
    assert record.data["dataset"] == "toy" and record.eval_split == "val"
    prov = record.provenance
    assert prov["iteration"] == 3 and prov["weights"] == "final" and prov["atrous"] == atrous.__version__
    assert 0 <= prov["metrics"]["val"]["miou"] <= 1 and prov["torch"] == torch.__version__ and prov["time"]


def test_predict_from_the_file_alone_gives_the_trainers_outputs(trained, tmp_path):
    _, weights = trained
    images = tmp_path / "images"
    images.mkdir()
    write_image(images / "a.png", 64, 64, 1)
    write_image(images / "tiny.png", 8, 8, 2)  # smaller than the network's minimum: padded, cropped back
    assert main(["predict", str(weights), str(images), "--out", str(tmp_path / "preds")]) == 0
    model = atrous.load(weights)
    x = torch.from_numpy(model.record.normalization.apply(np.asarray(Image.open(images / "a.png"))))[None]
    with torch.no_grad():
        expected = model(x).argmax(1)[0].numpy()
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "preds" / "a.png")), expected)
    assert np.asarray(Image.open(tmp_path / "preds" / "tiny.png")).shape == (8, 8)
    manifest = json.loads((tmp_path / "preds" / "predict.json").read_text())
    assert "a.png" in manifest["outputs"] and manifest["failed"] == []


def test_export_quantize_eval_and_bench_from_the_file_alone(trained, tmp_path, capsys):
    root, weights = trained
    trained_eval = json.loads((root / "run" / "eval_val.json").read_text())
    assert main(["eval", str(weights), "--json", str(tmp_path / "e.json")]) == 0
    assert json.loads((tmp_path / "e.json").read_text())["miou"] == trained_eval["miou"]
    onnx = tmp_path / "m.onnx"
    assert main(["export", str(weights), "--onnx", str(onnx), "--size", "64x64", "--dynamic"]) == 0
    from atrous.deploy.export import OnnxModel

    exported = OnnxModel(onnx)
    assert exported.record.options["dilations"] == [[1], [1, 5]] and exported.num_classes == 3
    assert main(["eval", str(onnx), "--json", str(tmp_path / "o.json")]) == 0
    assert abs(json.loads((tmp_path / "o.json").read_text())["miou"] - trained_eval["miou"]) < 1e-3
    images = tmp_path / "calib"
    images.mkdir()
    for k in range(2):
        write_image(images / f"{k}.png", 64, 64, k)
    int8 = tmp_path / "int8.onnx"
    assert main(["quantize", str(weights), "--calib", str(images), "--out", str(int8), "--size", "64x64",
                 "--limit", "2"]) == 0
    assert OnnxModel(int8).record.provenance["int8"]["calibration_images"] == 2
    assert main(["predict", str(int8), str(images), "--out", str(tmp_path / "int8_preds")]) == 0
    assert main(["bench", str(weights), "--size", "64x64", "--warmup", "1", "--iters", "1"]) == 0
    assert "regseg" in capsys.readouterr().out
    assert main(["predict", "dwrseg_base", str(images), "--weights", str(weights), "--out", str(tmp_path / "x")]) == 2
    assert "holds weights of 'regseg', not 'dwrseg_base'" in capsys.readouterr().err


def snapshot(folder):
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_predict_never_overwrites_inputs_or_foreign_files(trained, tmp_path, capsys):
    _, weights = trained
    images = tmp_path / "images"
    (images / "sub").mkdir(parents=True)
    write_image(images / "a.png", 40, 40, 0)
    write_image(images / "sub" / "b.jpg", 40, 40, 1)
    before = snapshot(images)
    for out in (images, images / "sub", images / "new"):
        assert main(["predict", str(weights), str(images), "--out", str(out)]) == 2
        assert "is, or is inside, the input folder" in capsys.readouterr().err
    # an output that would be an input file, given as a single file with --out beside it
    assert main(["predict", str(weights), str(images / "a.png"), "--out", str(images)]) == 2
    assert "would overwrite the input" in capsys.readouterr().err
    assert snapshot(images) == before and not (images / "new").exists()
    # a folder holding someone else's file of a planned name is refused; our own earlier output is not
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "a.png").write_bytes(b"mine")
    assert main(["predict", str(weights), str(images), "--out", str(foreign)]) == 2
    assert (foreign / "a.png").read_bytes() == b"mine" and "not written by atrous predict" in capsys.readouterr().err
    ours = tmp_path / "ours"
    assert main(["predict", str(weights), str(images), "--out", str(ours)]) == 0
    assert main(["predict", str(weights), str(images), "--out", str(ours)]) == 0  # a re-run is fine


def test_a_bad_image_is_named_and_the_others_are_written(trained, tmp_path, capsys):
    _, weights = trained
    images = tmp_path / "images"
    images.mkdir()
    write_image(images / "a.png", 40, 40, 0)
    write_image(images / "c.png", 40, 40, 2)
    data = (images / "a.png").read_bytes()
    (images / "b.png").write_bytes(data[: len(data) // 2])  # truncated
    (images / "d.jpg").write_bytes(b"this is not an image")
    assert main(["predict", str(weights), str(images), "--out", str(tmp_path / "out"), "--batch", "2"]) == 1
    captured = capsys.readouterr()
    assert "wrote 2 images" in captured.out and "failed 2" in captured.err
    assert str(images / "b.png") in captured.err and str(images / "d.jpg") in captured.err
    assert "Traceback" not in captured.err
    assert {p.name for p in (tmp_path / "out").glob("*.png")} == {"a.png", "a_overlay.png", "c.png", "c_overlay.png"}


def test_outputs_get_the_process_umask(trained, tmp_path):
    _, weights = trained
    old = os.umask(0o022)
    try:
        write_image(tmp_path / "a.png", 40, 40)
        assert main(["predict", str(weights), str(tmp_path / "a.png"), "--out", str(tmp_path / "p")]) == 0
        assert main(["export", str(weights), "--onnx", str(tmp_path / "m.onnx"), "--size", "64x64"]) == 0
    finally:
        os.umask(old)
    for path in (tmp_path / "p" / "a.png", tmp_path / "p" / "predict.json", tmp_path / "m.onnx", weights):
        assert oct(path.stat().st_mode & 0o777) == oct(0o644), path


def test_predict_and_eval_on_another_backend(trained, tmp_path, capsys):
    _, weights = trained
    images = tmp_path / "images"
    images.mkdir()
    write_image(images / "a.png", 64, 64, 1)
    assert main(["predict", str(weights), str(images), "--out", str(tmp_path / "p"), "--backend",
                 "onnxruntime-opt+nospin", "--threads", "1"]) == 0
    assert "backend 64x64: onnxruntime-opt+nospin, fp32" in capsys.readouterr().out
    model = atrous.load(weights)
    x = torch.from_numpy(model.record.normalization.apply(np.asarray(Image.open(images / "a.png"))))[None]
    with torch.no_grad():
        expected = model(x).argmax(1)[0].numpy()
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "p" / "a.png")), expected)
    assert main(["eval", str(weights), "--backend", "bogus"]) == 2
    assert "backend 'bogus' is unknown" in capsys.readouterr().err
    assert main(["eval", str(weights), "--backend", "onnxruntime-opt", "--json", str(tmp_path / "e.json")]) == 0
    assert json.loads((tmp_path / "e.json").read_text())["backend"].startswith("64x64: onnxruntime-opt")


def test_a_run_folder_stands_for_its_weights(trained, tmp_path, capsys):
    root, weights = trained
    assert main(["eval", str(root / "run"), "--json", str(tmp_path / "e.json")]) == 0
    assert json.loads((tmp_path / "e.json").read_text())["weights"] == str(weights)
    images = tmp_path / "images"
    images.mkdir()
    write_image(images / "a.png", 40, 40)
    assert main(["predict", str(root / "run"), str(images), "--out", str(tmp_path / "p")]) == 0
