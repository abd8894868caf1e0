"""Prediction on images, folders and videos, Cityscapes submission files, int8 quantization and
the benchmark's plumbing (issue 6). No timings are asserted."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from atrous import create_model
from atrous.data.classes import CITYSCAPES_LABEL_TO_TRAIN
from atrous.deploy.outputs import submission_name
from atrous.deploy.predict import load_palette, predict, train_to_label_ids


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return create_model("regseg", num_classes=19).eval()


def write_image(path, h, w, seed=0):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)


def test_predict_images_and_folders_any_size(model, tmp_path):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    write_image(src / "a.png", 64, 96, 0)
    write_image(src / "sub" / "b.jpg", 64, 96, 1)  # same size as a: batched together
    write_image(src / "c.png", 45, 70, 2)  # odd size
    single = tmp_path / "d.png"
    write_image(single, 40, 33, 3)
    out = tmp_path / "out"
    result = predict(model, [str(src), str(single)], str(out), batch=2, progress=False)
    assert result["images"] == 4 and result["videos"] == 0
    for stem, (h, w) in {"a": (64, 96), "sub/b": (64, 96), "c": (45, 70), "d": (40, 33)}.items():
        labels = np.asarray(Image.open(out / f"{stem}.png"))
        assert labels.shape == (h, w) and labels.max() < 19
        overlay = np.asarray(Image.open(out / f"{stem}_overlay.png"))
        assert overlay.shape == (h, w, 3)
    # the batched result equals the one-at-a-time result
    alone = tmp_path / "alone"
    predict(model, [str(src / "sub" / "b.jpg")], str(alone), progress=False)
    np.testing.assert_array_equal(np.asarray(Image.open(alone / "b.png")), np.asarray(Image.open(out / "sub" / "b.png")))


def test_side_by_side_and_palettes(model, tmp_path):
    write_image(tmp_path / "x.png", 48, 64)
    classes = tmp_path / "classes.txt"
    classes.write_text("\n".join(f"class{k}" for k in range(19)) + "\n")
    palette = load_palette(str(classes), 19)
    assert palette.shape == (19, 3) and len({tuple(c) for c in palette}) == 19
    predict(model, [str(tmp_path / "x.png")], str(tmp_path / "o"), palette=palette, side_by_side=True,
            progress=False)
    side = np.asarray(Image.open(tmp_path / "o" / "x_side.png"))
    assert side.shape == (48, 128, 3)
    labels = np.asarray(Image.open(tmp_path / "o" / "x.png"))
    np.testing.assert_array_equal(side[:, 64:], palette[labels])
    assert load_palette("camvid", 11).shape == (11, 3)
    with pytest.raises(ValueError, match="11 colours"):
        load_palette("camvid", 19)
    with pytest.raises(ValueError, match="--palette"):
        load_palette("nope", 19)


def test_predict_video(model, tmp_path):
    cv2 = pytest.importorskip("cv2")
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (96, 64))
    assert writer.isOpened()
    for k in range(5):
        frame = np.full((64, 96, 3), 40 * k, dtype=np.uint8)
        frame[:, : 20 + 10 * k] = (0, 0, 255)
        writer.write(frame)
    writer.release()
    out = tmp_path / "out"
    result = predict(model, [str(video)], str(out), batch=2, progress=False)
    assert {k: result[k] for k in ("images", "videos", "frames", "failed")} == {
        "images": 0, "videos": 1, "frames": 5, "failed": []}
    pngs = sorted((out / "clip").glob("*.png"))
    assert [p.name for p in pngs] == [f"{k:06d}.png" for k in range(5)]
    assert np.asarray(Image.open(pngs[0])).shape == (64, 96)
    capture = cv2.VideoCapture(str(out / "clip_overlay.mp4"))
    frames = 0
    while capture.read()[0]:
        frames += 1
    assert frames == 5 and int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)) == 96


def test_cityscapes_submission_names_and_label_ids(model, tmp_path):
    table = train_to_label_ids()
    assert [int(table[t]) for t in range(19)] == sorted(CITYSCAPES_LABEL_TO_TRAIN)
    assert table[0] == 7 and table[18] == 33 and table[255] == 0
    assert submission_name("x/berlin_000000_000019_leftImg8bit.png") == "berlin_000000_000019_labelIds.png"
    with pytest.raises(ValueError, match="Cityscapes image name"):
        submission_name("holiday.png")
    src = tmp_path / "test" / "berlin"
    src.mkdir(parents=True)
    write_image(src / "berlin_000000_000019_leftImg8bit.png", 64, 128)
    write_image(src / "berlin_000001_000019_leftImg8bit.png", 64, 128, 1)
    out = tmp_path / "submission"
    predict(model, [str(tmp_path / "test")], str(out), cityscapes_submission=True, batch=2, progress=False)
    files = sorted(p.name for p in out.rglob("*.png"))  # beside them only the manifest, predict.json
    assert files == ["berlin_000000_000019_labelIds.png",
                     "berlin_000001_000019_labelIds.png"]
    assert sorted(p.name for p in out.iterdir()) == files + ["predict.json"]
    ids = np.asarray(Image.open(out / files[0]))
    assert ids.shape == (64, 128) and set(np.unique(ids)) <= set(CITYSCAPES_LABEL_TO_TRAIN)
    plain = tmp_path / "plain"
    predict(model, [str(src / "berlin_000000_000019_leftImg8bit.png")], str(plain), progress=False)
    train_ids = np.asarray(Image.open(plain / "berlin_000000_000019_leftImg8bit.png"))
    np.testing.assert_array_equal(ids, table[train_ids])
    with pytest.raises(ValueError, match="19-class"):
        predict(create_model("regseg", num_classes=11), [str(tmp_path / "test")], str(out),
                cityscapes_submission=True, progress=False)


def test_quantized_model_runs_and_stays_close(tmp_path):
    from atrous.deploy.export import onnx_bytes, ort_session, run_ort
    from atrous.deploy.quantize import quantize_model

    from test_deploy import randomized

    model = randomized(create_model("regseg", num_classes=11))
    images = tmp_path / "calib"
    images.mkdir()
    for k in range(4):
        write_image(images / f"{k}.png", 80, 100, k)
    summary = quantize_model(model, tmp_path / "int8.onnx", str(images), size=(64, 96), limit=4, progress=False)
    assert summary["calibration_images"] == 4
    session = ort_session(str(tmp_path / "int8.onnx"))
    assert any(n.op_type == "QuantizeLinear" for n in __import__("onnx").load(tmp_path / "int8.onnx").graph.node)
    x = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        expected = model(x).numpy()
    got = run_ort(session, x)
    assert got.shape == expected.shape
    scale = np.abs(expected).max()
    assert np.abs(got - expected).max() <= 0.15 * scale
    assert (got.argmax(1) == expected.argmax(1)).mean() >= 0.8


def test_bench_plumbing_runs_every_backend():
    from atrous.deploy.benchmark import FP32_BACKENDS, benchmark, format_results

    results = benchmark("regseg", FP32_BACKENDS[:2] + ("onnxruntime",), size=(64, 64), threads=1, warmup=1,
                        iters=2, progress=False)
    assert [r.backend for r in results] == ["eager", "fused", "onnxruntime"]  # the matmul reference is not one
    r = results[0]
    assert r.gmacs > 0 and r.ms_per_image > 0 and len(r.round_ms) == 2 and r.precision == "fp32"
    assert r.matmul_gflops_per_s > 0 and r.matmul_share == r.gflops_per_s / r.matmul_gflops_per_s
    assert "speed-up" in format_results(results)


def test_interleaved_rounds_alternate_the_order():
    from atrous.deploy.benchmark import time_interleaved

    calls = []
    runners = {name: (lambda name=name: calls.append(name)) for name in "abc"}
    times = time_interleaved(runners, "cpu", warmup=1, iters=4, rounds=4, progress=False, settle=0)
    assert calls[:3] == ["a", "b", "c"]  # warm-up
    assert calls[3:] == list("abc" "cba" "abc" "cba")  # no runner always follows the same one
    assert all(len(t) == 4 for t in times.values())


def test_speed_target_verdicts():
    from atrous.deploy.benchmark import BenchResult
    from atrous.deploy.speed_table import verdict

    def result(backend, rounds):
        ms = sum(rounds) / len(rounds)
        return BenchResult("m", backend, "cpu", "cpu", 2, "fp32", 64, 64, 1, 1, len(rounds), ms, 1000 / ms,
                           1.0, 1.0, 100.0, tuple(rounds))

    eager, ort = result("eager", [200, 200]), result("onnxruntime", [100, 110])
    assert verdict([eager, ort, result("onnxruntime-opt", [95, 100])]) == ("2.05x (onnxruntime-opt), 1.08x ORT", "yes")
    assert verdict([eager, ort, result("compile", [104, 108])])[1] == "tie"  # 106 > 105, rounds overlap
    assert verdict([eager, ort, result("fused", [115, 120])])[1] == "no"  # slower in every round
    assert verdict([result("eager", [120, 120]), ort, result("fused", [95, 95])])[1] == "no"  # 1.26x eager
    assert verdict([ort]) == ("-", "-")  # default ONNX Runtime is not "ours"
    assert verdict([ort, result("openvino", [90, 90])]) == ("openvino", "-")  # no eager timed: no ratio
