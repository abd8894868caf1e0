"""RegSeg against the official code (../shared/reference) and the paper's numbers."""
from __future__ import annotations

import pytest
import torch

import atrous
from atrous.nn import DBlock, DilatedConv
from atrous.errors import WeightsError
from atrous.weights import convert_official, load_state
from conftest import load_fixture, load_meta, read_keys_tsv, zeros_from_keys

TABLE2 = [[1, 1], [1, 2], [1, 2], [1, 3], [2, 3], [2, 7], [2, 3], [2, 6], [2, 5], [2, 9], [2, 11], [4, 7], [5, 14]]


@pytest.fixture(scope="module")
def official_regseg():
    fixture = load_fixture("regseg_exp48_decoder26")
    return atrous.from_official("regseg", fixture["state_dict"]), fixture


def test_fixture_output(official_regseg):
    model, fixture = official_regseg
    with torch.no_grad():
        out = model(fixture["input"])
    torch.testing.assert_close(out, fixture["output"], atol=1e-5, rtol=1e-5)


def test_check_256x512_figures(official_regseg):
    model, _ = official_regseg
    check = load_meta("regseg_exp48_decoder26")["check_256x512"]
    torch.manual_seed(2)
    with torch.no_grad():
        out = model(torch.randn(1, 3, 256, 512)).double()
    assert out.sum().item() == pytest.approx(check["sum"], rel=1e-4)
    assert out.abs().sum().item() == pytest.approx(check["abs_sum"], rel=1e-5)
    assert out.std().item() == pytest.approx(check["std"], rel=1e-4)
    for where, logits in check["logits_at_(row,col)"].items():
        r, c = (int(v) for v in where.split(","))
        torch.testing.assert_close(out[0, :, r, c], torch.tensor(logits, dtype=torch.float64), atol=2e-6, rtol=0)


def test_from_official_file_and_wrapped_dict(tmp_path):
    fixture = load_fixture("regseg_exp48_decoder26")
    path = tmp_path / "best.pth"
    torch.save({"model": {"module." + k: v for k, v in fixture["state_dict"].items()}}, path)
    model = atrous.from_official("regseg", path)
    with torch.no_grad():
        torch.testing.assert_close(model(fixture["input"]), fixture["output"], atol=1e-5, rtol=1e-5)


def test_from_official_reads_class_count():
    state = zeros_from_keys("regseg_exp48_decoder26")
    state["decoder.classifier.weight"] = torch.zeros(11, 64, 1, 1)
    state["decoder.classifier.bias"] = torch.zeros(11)
    assert atrous.from_official("regseg", state).num_classes == 11


def test_mismatched_checkpoint_lists_keys():
    state = zeros_from_keys("regseg_exp48_decoder26")
    del state["decoder.conv4.conv.weight"]
    state["decoder.extra.weight"] = torch.zeros(1)
    state["decoder.head4.conv.weight"] = torch.zeros(9, 48, 1, 1)
    with pytest.raises(WeightsError) as info:
        atrous.from_official("regseg", state)
    text = str(info.value)
    assert "missing (1): decoder.conv4.conv.weight" in text
    assert "unexpected (1): decoder.extra.weight" in text
    assert "mis-shaped (1): decoder.head4.conv.weight" in text


def test_regseg_large_layout_equals_official_keys():
    official = read_keys_tsv("regseg_exp53_decoder29")
    converted = convert_official("regseg_large", zeros_from_keys("regseg_exp53_decoder29"))
    model = atrous.create_model("regseg_large")
    ours = {k: v.shape for k, v in model.state_dict().items()}
    assert {k: v.shape for k, v in converted.items()} == ours
    assert len(official) == len(ours) == 558
    load_state(model, converted)


def test_params_equal_meta():
    for variant, ref in [("regseg", "regseg_exp48_decoder26"), ("regseg_large", "regseg_exp53_decoder29")]:
        model = atrous.create_model(variant)
        assert sum(p.numel() for p in model.parameters()) == load_meta(ref)["params"]


def test_field_of_view():
    assert atrous.field_of_view(atrous.create_model("regseg")) == 3807
    assert atrous.field_of_view(atrous.create_model("regseg", dilations=TABLE2)) == 2399


def test_fov_bound_rows():
    from atrous.analysis import fov_table

    rows = fov_table(atrous.create_model("regseg", dilations=[[1, 60]] + TABLE2[1:]))
    first16 = next(r for r in rows if r.name == "stage16.1")
    assert first16.fov_before == 63 and first16.stride_before == 16 and not first16.holds
    assert all(r.holds for r in fov_table(atrous.create_model("regseg")))


def test_complexity_at_cityscapes_resolution():
    c = atrous.complexity(atrous.create_model("regseg"), (1024, 2048))
    meta = load_meta("regseg_exp48_decoder26")
    assert c["params"] == meta["params"]
    assert c["macs"] == pytest.approx(38.353e9, rel=5e-3) and c["macs"] == meta["macs_at_1x3x1024x2048"]
    assert c["paper_convention"] == "fvcore"
    assert c["paper_flops"] == pytest.approx(39.08e9, rel=5e-3)
    assert c["paper_flops"] == round(meta["fvcore_style_gflops_at_1024x2048"] * 1e9)


def test_dilation_variants_build():
    four = [[1, 2, 4, 8]] * 13
    model = atrous.create_model("regseg", dilations=four, widths=(48, 128, 256, 256), group_width=16).eval()
    assert model.backbone.stage16[5].conv2.conv.dilations == (1, 2, 4, 8)
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 80)).shape == (1, 19, 64, 80)
    short = atrous.create_model("regseg", dilations=[[1], [1, 6]])
    assert len(short.backbone.stage16) == 3
    with pytest.raises(ValueError, match="group_width"):
        atrous.create_model("regseg", group_width=48)


def test_dblock_dilations_reach_as_claimed():
    """A 2-branch D block: the first half of the channels sees only dilation r1, the second r2."""
    conv = DilatedConv(32, [1, 5], group_width=16)
    x = torch.zeros(1, 32, 21, 21, requires_grad=True)
    conv(x)[0, :, 10, 10].sum().backward()
    g = x.grad[0].abs().sum(0) > 0
    rows = g.any(1).nonzero().flatten().tolist()
    assert rows == [5, 9, 10, 11, 15]


def test_dblock_stride2_shortcut_odd_size():
    block = DBlock(32, 48, [1], 16, stride=2).eval()
    assert block(torch.randn(1, 32, 33, 17)).shape == (1, 48, 17, 9)


def test_dblock_exports_to_onnx(tmp_path):
    onnx = pytest.importorskip("onnx")
    block = DBlock(64, 64, [1, 4], 16).eval()
    path = tmp_path / "dblock.onnx"
    torch.onnx.export(block, (torch.randn(1, 64, 16, 16),), str(path), dynamo=False)
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert "Split" in ops or "Slice" in ops
