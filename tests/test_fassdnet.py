"""FASSD-Net (-L1, -L2) against the official code (../shared/reference) and the paper's numbers."""
from __future__ import annotations

import pytest
import torch

import atrous
from atrous.models import get_entry
from atrous.nn import MDA, AsymmetricDilatedConv, HarDBlock, harmonic_links
from atrous.errors import WeightsError
from atrous.weights import convert_official, load_state
from conftest import load_fixture, load_meta, read_keys_tsv, zeros_from_keys

VARIANTS = ["fassdnet", "fassdnet_l1", "fassdnet_l2"]

# official module prefix in modules.pt -> our submodule
MODULE_PAIRS = {
    "DAPF": "dapf",
    "mda.0": "decoder.0.mda",
    "mda.1": "decoder.1.mda",
    "mda.2": "decoder.2.mda",
    "base.4": "encoder.0.block",
    "base.13": "encoder.3.block",
    "denseBlocksUp.0": "decoder.0.block",
}


@pytest.fixture(scope="module")
def fassdnet_fixture():
    return load_fixture("fassdnet")


@pytest.fixture(scope="module")
def fassdnet_model(fassdnet_fixture):
    return atrous.from_official("fassdnet", fassdnet_fixture["state_dict"])


def official_weights(variant, fassdnet_fixture):
    """The fixture's official state dict (FASSD-Net-L1's is FASSD-Net's, per its meta.json)."""
    if variant == "fassdnet_l2":
        return load_fixture("fassdnet_l2")["state_dict"]
    return fassdnet_fixture["state_dict"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_fixture_output(variant, fassdnet_fixture):
    fixture = fassdnet_fixture if variant == "fassdnet" else load_fixture(variant)
    model = atrous.from_official(variant, official_weights(variant, fassdnet_fixture))
    with torch.no_grad():
        out = model(fixture["input"])
    assert out.shape == fixture["output"].shape == (1, 19, 128, 256)
    torch.testing.assert_close(out, fixture["output"], atol=1e-5, rtol=0)


@pytest.fixture(scope="module")
def module_pairs():
    return load_fixture("fassdnet", "modules.pt")


@pytest.mark.parametrize("official, ours", MODULE_PAIRS.items())
def test_module_pairs(official, ours, fassdnet_model, module_pairs):
    """DAPF at 40x48 exercises dilations 12/24/36, which the 128x256 model fixture cannot reach."""
    pair = module_pairs[official]
    with torch.no_grad():
        out = fassdnet_model.get_submodule(ours)(pair["input"])
    torch.testing.assert_close(out, pair["output"], atol=1e-5, rtol=0)


@pytest.mark.parametrize("variant, reference, entries", [("fassdnet", "fassdnet", 479),
                                                         ("fassdnet_l1", "fassdnet_l1", 479),
                                                         ("fassdnet_l2", "fassdnet_l2", 401)])
def test_layout_equals_official_keys(variant, reference, entries):
    converted = convert_official(variant, zeros_from_keys(reference))
    model = atrous.create_model(variant)
    assert {k: v.shape for k, v in converted.items()} == {k: v.shape for k, v in model.state_dict().items()}
    assert len(read_keys_tsv(reference)) == len(converted) == entries
    load_state(model, converted)


@pytest.mark.parametrize("variant", VARIANTS)
def test_encoder_shapes_and_params_equal_meta(variant):
    meta = load_meta(variant)
    model = atrous.create_model(variant).eval()
    assert sum(p.numel() for p in model.parameters()) == meta["params"]
    assert sum(b.numel() for b in model.buffers()) == meta["buffers_numel"]
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) == meta["batchnorm_modules"]
    shapes = []
    with torch.no_grad():
        x = model.stem(torch.zeros(1, 3, 128, 256))
        for stage in model.encoder:
            x, skip = stage(x)
            shapes.append(list(skip.shape[1:]))
    shapes[-1] = list(x.shape[1:])  # the last stage's reported output is after its transition
    assert shapes == meta["encoder_feature_shapes_CxHxW_at_128x256"]


def test_table2_channels():
    """Table II: encoder 64/96/160/224, MDA 192/119/63, decoder blocks 160/78/48."""
    model = atrous.create_model("fassdnet")
    assert [s.transition.out_channels for s in model.encoder] == [64, 96, 160, 224]
    assert [s.mda.expand.out_channels for s in model.decoder] == [192, 119, 63]
    assert [s.out_channels for s in model.decoder] == [160, 78, 48]
    assert [s.mda.dilation for s in model.decoder] == [8, 4, 2]
    assert model.dapf.dilations == (12, 24, 36) and model.dapf.project.out_channels == 112
    l2 = atrous.create_model("fassdnet_l2")
    assert [s.out_channels for s in l2.decoder] == [64, 64, 64]
    assert [s.mda.expand.out_channels for s in l2.decoder] == [192, 71, 56]


def test_harmonic_links():
    assert [harmonic_links(k, 10, 1.7) for k in range(1, 5)] == [(10, [0]), (18, [1, 0]), (10, [2]), (28, [3, 2, 0])]
    width, links = harmonic_links(8, 24, 1.7)
    assert links == [7, 6, 4, 0] and width == 118
    block = HarDBlock(160, 24, 1.7, 8)
    assert block.out_channels == 214 and block.kept == [1, 3, 5, 7, 8]
    with pytest.raises(ValueError, match="num_layers"):
        HarDBlock(16, 8, 1.7, 0)


def test_asymmetric_conv_reaches_its_dilation():
    """3x1 then 1x3, both dilated by d: the output pixel sees a 3x3 grid with spacing d."""
    conv = AsymmetricDilatedConv(1, 1, dilation=5, act=None)
    torch.nn.init.ones_(conv.conv3x1.conv.weight)
    torch.nn.init.ones_(conv.conv1x3.conv.weight)
    x = torch.zeros(1, 1, 21, 21, requires_grad=True)
    conv.eval()(x)[0, 0, 10, 10].backward()
    seen = (x.grad[0, 0] != 0).nonzero().tolist()
    assert seen == [[r, c] for r in (5, 10, 15) for c in (5, 10, 15)]


def test_mda_is_residual_and_sums_branches():
    mda = MDA(16, dilation=4).eval()
    torch.nn.init.zeros_(mda.expand.weight)
    x = torch.randn(1, 16, 12, 12)
    with torch.no_grad():
        assert torch.equal(mda(x), x)
    assert mda.context.dilation == 4 and mda.pre.bn.eps == 1e-3
    assert isinstance(mda.reduce.act, torch.nn.PReLU) and mda.reduce.act.weight.numel() == 8


@pytest.mark.parametrize("variant, lowest", [("fassdnet", 29), ("fassdnet_l1", 43), ("fassdnet_l2", 57)])
def test_small_inputs_are_padded_only_below_the_native_minimum(variant, lowest):
    model = atrous.create_model(variant, num_classes=3).eval()
    assert model.native_min_size == lowest
    assert model.stem_size(lowest) // 8 == 1 and model.stem_size(lowest - 1) // 8 == 0
    torch.manual_seed(0)
    x = torch.randn(1, 3, 32, 70)
    with torch.no_grad():
        y = model(x)
        assert y.shape == (1, 3, 32, 70)
        if lowest > 32:  # padded to lowest rows, then cropped back: same as padding by hand
            padded = torch.nn.functional.pad(x, (0, 0, 0, lowest - 32))
            torch.testing.assert_close(y, model(padded)[..., :32, :], atol=0, rtol=0)


def test_training_mode_returns_one_tensor():
    model = atrous.create_model("fassdnet_l2", num_classes=4).train()
    out = model(torch.randn(2, 3, 64, 48))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 4, 64, 48)


def test_from_official_file_and_class_count(tmp_path, fassdnet_fixture):
    path = tmp_path / "FASSDNet_best_model.pkl"
    wrapped = {"model_state": {"module." + k: v for k, v in fassdnet_fixture["state_dict"].items()}}
    torch.save(wrapped, path)
    model = atrous.from_official("fassdnet", path)
    with torch.no_grad():
        torch.testing.assert_close(model(fassdnet_fixture["input"]), fassdnet_fixture["output"],
                                   atol=1e-5, rtol=0)
    state = zeros_from_keys("fassdnet_l2")
    state["finalConv.weight"] = torch.zeros(11, 64, 1, 1)
    state["finalConv.bias"] = torch.zeros(11)
    assert atrous.from_official("fassdnet_l2", state).num_classes == 11


def test_l2_checkpoint_does_not_fit_fassdnet():
    with pytest.raises(WeightsError) as info:
        atrous.from_official("fassdnet", zeros_from_keys("fassdnet_l2"))
    text = str(info.value)
    assert "missing" in text and "decoder.0.block.layers.0.conv.weight" in text
    assert "unexpected" in text and "decoder.0.block.conv.weight" in text


def test_field_of_view():
    assert [atrous.field_of_view(atrous.create_model(v)) for v in VARIANTS] == [3215, 4821, 6423]


@pytest.mark.parametrize("variant", VARIANTS)
def test_complexity_at_cityscapes_resolution(variant):
    """MACs equal the official count; the ptflops rule reproduces the paper's GFLOPs (Table IV).
    Counted on the meta device (shapes only, no arithmetic), which gives the same records."""
    meta = load_meta(variant)
    c = atrous.complexity(atrous.create_model(variant).to("meta"), (1024, 2048))
    assert c["params"] == meta["params"]
    assert c["macs"] == meta["macs_1024x2048_torch_flop_counter"]
    assert c["paper_convention"] == "ptflops"
    assert round(c["paper_flops"] / 1e9, 3) == meta["ptflops_style_gmac_1024x2048"]
    card = get_entry(variant).card
    assert c["paper_flops"] / 1e9 == pytest.approx(card.flops_g, abs=0.05)
