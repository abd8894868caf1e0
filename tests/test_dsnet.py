"""DSNet against the official code (../shared/reference) and the paper's numbers."""
from __future__ import annotations

import pytest
import torch

import atrous
from atrous.analysis import count_params
from atrous.models import split_outputs
from atrous.nn import MFACB, MSAF, SPASPP, BasicBlock, Bottleneck
from atrous.errors import WeightsError
from atrous.weights import convert_official, load_state
from conftest import load_fixture, load_meta, read_keys_tsv, zeros_from_keys

VARIANT_PARAMS = {"dsnet": 6_755_539, "dsnet_head128": 6_755_539, "dsnet_head64": 6_551_315,
                  "dsnet_head256": 10_024_278, "dsnet_base": 37_461_395}


def close_to_reference(out, ref):
    """The meta.json check: rtol 1e-3 and atol 1e-3 of the largest reference logit (random-BN
    activations reach 1.6e4; thread count alone moves them by 1.1e-4 of that)."""
    return torch.allclose(out, ref, rtol=1e-3, atol=1e-3 * ref.abs().max().item())


@pytest.fixture(scope="module")
def official_dsnet():
    fixture = load_fixture("dsnet_head128")
    return atrous.from_official("dsnet", fixture["state_dict"]), fixture


def test_fixture_output(official_dsnet):
    model, fixture = official_dsnet
    with torch.no_grad():
        out = model(fixture["input"])
    assert out.shape == fixture["output"].shape == (1, 19, 128, 256)
    assert close_to_reference(out, fixture["output"])
    assert (out.argmax(1) == fixture["output"].argmax(1)).float().mean() > 0.999


def test_check_256x512_figures(official_dsnet):
    model, _ = official_dsnet
    check = load_meta("dsnet_head128")["check_256x512"]
    torch.manual_seed(2)
    with torch.no_grad():
        out = model(torch.randn(1, 3, 256, 512)).double()
    assert out.shape == tuple(check["output_shape"])
    assert out.sum().item() == pytest.approx(check["sum"], rel=1e-4)
    assert out.abs().sum().item() == pytest.approx(check["abs_sum"], rel=1e-5)
    assert out.mean().item() == pytest.approx(check["mean"], rel=1e-4)
    assert out.std().item() == pytest.approx(check["std"], rel=1e-4)


def official_aux_state(fixture_state):
    """The fixture's weights plus official-layout training heads (seghead_p/seghead_d), wrapped
    as the official FullModel saves them (``model.`` prefix, a loss buffer beside)."""
    torch.manual_seed(0)
    aux = atrous.create_model("dsnet", aux_heads=True).state_dict()
    names = {"pre_bn": "bn1", "conv.conv": "conv1", "conv.bn": "bn2", "classifier": "conv2"}
    state = dict(fixture_state)
    for key, value in aux.items():
        for head, official in (("aux_p.", "seghead_p."), ("aux_d.", "seghead_d.")):
            if key.startswith(head):
                rest = key[len(head):]
                part = next(p for p in names if rest.startswith(p + "."))
                state[official + names[part] + rest[len(part):]] = value
    wrapped = {"model." + k: v for k, v in state.items()}
    wrapped["sem_loss.criterion.weight"] = torch.ones(19)
    return wrapped


def test_training_heads_load_and_train(official_dsnet):
    plain, fixture = official_dsnet
    model = atrous.from_official("dsnet", official_aux_state(fixture["state_dict"]))
    aux_params = sum(p.numel() for n, p in model.named_parameters() if n.startswith(("aux_p.", "aux_d.")))
    assert aux_params == load_meta("dsnet_head128")["aux_head_params_training_only"] == 188_230
    with torch.no_grad():
        assert torch.equal(model(fixture["input"]), plain(fixture["input"]))
    model.train()
    main, aux = split_outputs(model(torch.randn(2, 3, 32, 64)))
    assert len(aux) == 2 and all(y.shape == (2, 19, 32, 64) for y in [main, *aux])
    sum(y.square().mean() for y in aux).backward()
    assert model.aux_p.conv.conv.weight.grad.abs().sum() > 0
    assert model.fusion3.pixel.squeeze.conv.weight.grad.abs().sum() > 0
    assert model.head.classifier.weight.grad is None  # aux losses do not reach the main head


def test_params_of_every_variant():
    for name, expected in VARIANT_PARAMS.items():
        assert count_params(atrous.create_model(name)) == expected, name
    assert atrous.create_model("dsnet_head256").num_classes == 150
    meta = load_meta("dsnet_head128")
    train = atrous.create_model("dsnet")  # the training heads are built by default
    assert count_params(train, training_only=True) == meta["params_train_model_with_aux_heads"]
    assert sum(p.numel() for p in train.parameters()) == meta["params_train_model_with_aux_heads"]
    assert sum(p.numel() for p in atrous.create_model("dsnet", aux_heads=False).parameters()) == meta["params"]


def test_layouts_equal_official_keys():
    for name, ref, entries in (("dsnet", "dsnet_head128", 611), ("dsnet_base", "dsnet_base", 665)):
        official = read_keys_tsv(ref)
        converted = convert_official(name, zeros_from_keys(ref))
        model = atrous.create_model(name, aux_heads=False)  # the official eval layout
        ours = {k: v.shape for k, v in model.state_dict().items()}
        assert {k: v.shape for k, v in converted.items()} == ours
        assert len(official) == len(ours) == entries
        load_state(model, converted)


def test_head_variants_convert_from_their_own_layouts():
    """head64/head256 have no reference file: their official layout is head128's with the widths
    of the official constructor; a round trip through the reverse names must load strictly."""
    for name, classes in (("dsnet_head64", 19), ("dsnet_head256", 150)):
        model = atrous.create_model(name, aux_heads=False)
        converted = convert_official(name, _official_names(model.state_dict()))
        load_state(model, converted)
        assert model.head.classifier.weight.shape[0] == classes


def _official_names(state):
    """Our state dict renamed to the official layout, by inverting the key map on head128's keys
    (same names for every variant)."""
    ref = read_keys_tsv("dsnet_head128")
    ours_for = dict(zip(convert_official("dsnet", {k: torch.zeros(()) for k in ref}), ref))
    ours_for.update({"skip.shortcut.conv.weight": "layer1_a.0.downsample.0.weight"})
    ours_for.update({f"skip.shortcut.bn.{s}": f"layer1_a.0.downsample.1.{s}"
                     for s in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")})
    return {ours_for[k]: v for k, v in state.items()}


def test_mismatched_checkpoint_lists_keys():
    state = zeros_from_keys("dsnet_head128")
    del state["spp.process3.0.bias"]
    state["aff1.local_att.0.weight"] = torch.zeros(16, 128, 1, 1)
    with pytest.raises(WeightsError) as info:
        atrous.from_official("dsnet", state)
    text = str(info.value)
    assert "missing (1): spaspp.out.conv.bias" in text
    assert "mis-shaped (1): fusion3.pixel.squeeze.conv.weight" in text


def test_complexity_in_the_papers_convention():
    """MACs and thop ops at 1024x2048 equal the official model's (meta.json); thop / 2**30 is
    Table 9's 226.6 GFLOPs. Counted on the meta device: no arithmetic is run."""
    meta = load_meta("dsnet_head128")
    c = atrous.complexity(atrous.create_model("dsnet").to("meta"), (1024, 2048))
    assert c["params"] == meta["params"]
    assert c["macs"] == meta["macs_1024x2048_torch_flop_counter"] == 241_969_307_648
    assert c["paper_convention"] == "thop"
    assert c["paper_flops"] == meta["thop_ops_1024x2048"] == 243_329_039_232
    assert round(c["paper_flops"] / 2**30, 1) == 226.6
    assert c["fvcore_flops"] > c["macs"]


def test_any_input_size():
    """ceil(H/4) odd (H = 100, 124) breaks the official torch.cat; ours crops the x2 upsampling."""
    model = atrous.create_model("dsnet", num_classes=3).eval()
    with torch.no_grad():
        for h, w in ((100, 124), (33, 47)):
            assert model(torch.randn(1, 3, h, w)).shape == (1, 3, h, w)


def test_field_of_view():
    # stem 7, layer1 +4*8 = 39, layer2 +8 +16*3 = 95, MFACB rates (sum 45) and the Bottleneck's 5
    # at stride 8: +16 * 50 = 895; SPASPP's 6+12+18+24 add 16 * 60 = 960
    model = atrous.create_model("dsnet")
    assert atrous.field_of_view(model) == 895
    from atrous.analysis.fov import fov_table

    assert all(r.holds for r in fov_table(model))
    steps = model.fov_path(include_spaspp=True)
    assert steps[-1].dilations == (24,) and len(steps) == len(model.fov_path()) + 4
    assert atrous.field_of_view(atrous.create_model("dsnet_base")) == 895 + 16 * 15


def test_mfacb_receptive_fields_of_table2():
    """MFACB[2,2,2]: the three serial maps see 5x5, 9x9 and 13x13 (Table 2); the output sees the
    largest."""
    block = MFACB(4, 4, 8, (2, 2, 2)).eval()
    for m in block.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            torch.nn.init.constant_(m.bias, 100.0)  # every ReLU open: the gradient shows the reach
    x = torch.zeros(1, 4, 31, 31, requires_grad=True)
    block(x)[0, :, 15, 15].sum().backward()
    rows = (x.grad[0].abs().sum(0) > 0).any(1).nonzero().flatten()
    assert rows.min().item() == 15 - 6 and rows.max().item() == 15 + 6
    assert len(block.convs) == 3 and block.compress.conv.in_channels == 12


def test_msaf_region_attention_is_constant_per_region():
    torch.manual_seed(0)
    msaf = MSAF(8, reduction=4, regions=(4,)).eval()
    torch.nn.init.zeros_(msaf.pixel.expand.bn.weight)  # pixel attention off: only 4x4 regions remain
    torch.nn.init.constant_(msaf.region_gonvs[0].squeeze.bn.bias, 3.0)  # keep its ReLU open
    s, c = torch.randn(1, 8, 16, 16), torch.randn(1, 8, 16, 16)
    with torch.no_grad():
        a = msaf.attention(s + c)
        out = msaf(s, c)
    cells = a.unfold(2, 4, 4).unfold(3, 4, 4)  # 1 x 8 x 4 x 4 x (4 x 4) cells
    assert torch.allclose(cells, cells[..., :1, :1].expand_as(cells))
    assert not torch.allclose(a[..., :4, :4], a[..., 4:8, 4:8])
    torch.testing.assert_close(out, 2 * s * a + 2 * c * (1 - a))  # the official fusion (2x, swapped)


def test_msaf_default_regions_and_odd_sizes():
    msaf = MSAF(16).eval()
    assert msaf.regions == (1, 4, 8, 16)
    with torch.no_grad():
        assert msaf(torch.randn(1, 16, 5, 11), torch.randn(1, 16, 5, 11)).shape == (1, 16, 5, 11)
    with pytest.raises(ValueError, match="reduction"):
        MSAF(2, reduction=4)


def test_spaspp_is_serial_and_pools_globally():
    spp = SPASPP(8, 8, 8, (1, 2)).eval()
    x = torch.zeros(1, 8, 15, 15, requires_grad=True)
    spp.pool.conv.bn.bias.data.fill_(1.0)
    spp(x)[0, :, 0, 0].sum().backward()
    assert (x.grad[0].abs().sum(0) > 0).all()  # the global pool reaches every pixel
    assert SPASPP(8, 4, 6).rates == (6, 12, 18, 24)
    assert SPASPP(8, 4, 6).compress.conv.in_channels == 4 * 5


def test_residual_units_stride_and_odd_size():
    assert BasicBlock(8, 16, stride=2).eval()(torch.randn(1, 8, 33, 17)).shape == (1, 16, 17, 9)
    b = Bottleneck(16, 8, 16, dilation=5).eval()
    assert b.shortcut is None and b(torch.randn(1, 16, 9, 9)).shape == (1, 16, 9, 9)


def test_export_forms_of_region_pooling_equal_pytorch():
    from atrous.nn.msaf import averaging_matrix, nearest_matrix

    torch.manual_seed(0)
    for h, w in ((13, 16), (5, 11), (90, 160)):
        x = torch.randn(2, 4, h, w)
        for g in (4, 8, 16):
            pooled = torch.nn.functional.adaptive_avg_pool2d(x, g)
            by_matrix = averaging_matrix(g, h, x) @ x @ averaging_matrix(g, w, x).t()
            torch.testing.assert_close(by_matrix, pooled, atol=1e-6, rtol=0)
            up = nearest_matrix(h, pooled) @ pooled @ nearest_matrix(w, pooled, dim=-1).t()
            assert torch.equal(up, torch.nn.functional.interpolate(pooled, size=(h, w), mode="nearest"))


def test_msaf_exports_to_onnx_at_a_size_the_grids_do_not_divide(tmp_path):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    import warnings

    torch.manual_seed(0)
    msaf = MSAF(16).eval()
    s, c = torch.randn(1, 16, 13, 18), torch.randn(1, 16, 13, 18)
    path = tmp_path / "msaf.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(msaf, (s, c), str(path), dynamo=False, opset_version=17)
    session = ort.InferenceSession(str(path))
    names = [i.name for i in session.get_inputs()]
    got = session.run(None, {names[0]: s.numpy(), names[1]: c.numpy()})[0]
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(got), msaf(s, c), atol=1e-5, rtol=1e-5)
