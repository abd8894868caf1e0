"""DWRSeg: its blocks against the paper's description and its complexity against Table 1.

No official code exists, so there are no fixtures: the checks are structural (Sec 3.2-3.4), the
exact parameter counts we settled on, and MACs within 1% of Table 1 at 3x512x1024.
"""
from __future__ import annotations

import pytest
import torch

import atrous
from atrous.models import get_entry
from atrous.nn import DWRBlock, Shortcut, SIRBlock, StemBlock

# Table 1 (the paper's "Flops" are MACs) and what our reading gives (docs/models.md, DWRSeg).
TABLE1 = {"dwrseg_base": (2.54e6, 13.62e9), "dwrseg_large": (3.53e6, 16.42e9)}
OURS = {"dwrseg_base": (2_687_507, 13_539_737_600), "dwrseg_large": (3_683_859, 16_325_672_960)}


def test_dwr_block_three_branches_2_1_1():
    """Sec 3.2 / Table 2: region residualization 128 -> 1.5 x 128, three equal groups, the d-1
    branch with twice the output channels of the d-3 and d-5 branches (2:1:1)."""
    block = DWRBlock(128, 128, dilations=(1, 3, 5), expansion=1.5)
    assert block.region.conv.out_channels == 192
    assert block.split_sizes == [64, 64, 64]
    assert block.branch_channels == (128, 64, 64)
    assert [c.dilation[0] for c in block.semantic] == [1, 3, 5]
    assert all(c.groups == 64 for c in block.semantic)  # depth-wise: one input channel per filter
    assert block.bn.num_features == 256 and block.fuse.in_channels == 256 and block.fuse.out_channels == 128
    x = torch.randn(2, 128, 9, 13)
    assert block(x).shape == x.shape


def test_dwr_block_two_branches_and_custom_ratio():
    block = DWRBlock(128, 128, dilations=(1, 3), expansion=1.0)
    assert block.split_sizes == [64, 64] and block.branch_channels == (128, 64)
    even = DWRBlock(96, 96, dilations=(1, 3, 5), expansion=1.0, ratio=(1, 1, 1))
    assert even.branch_channels == (32, 32, 32)
    with pytest.raises(ValueError, match="ratio"):
        DWRBlock(96, 96, dilations=(1, 3), ratio=(2, 1, 1))
    with pytest.raises(ValueError, match="expansion"):
        DWRBlock(100, 100, dilations=(1, 3, 5), expansion=1.0)


def test_each_branch_sees_only_its_group_at_its_dilation():
    """Semantic residualization: one receptive field per channel. The output of branch i at a
    pixel depends on group i only, at offsets 0 and +-d_i."""
    block = DWRBlock(96, 96, dilations=(1, 3, 5), expansion=1.5)
    for i, d in enumerate(block.dilations):
        h = torch.zeros(1, 144, 21, 21, requires_grad=True)
        parts = torch.split(h, block.split_sizes, dim=1)
        block.semantic[i](parts[i])[0, :, 10, 10].sum().backward()
        grad = h.grad[0].abs()
        groups = [g.sum().item() > 0 for g in torch.split(grad, block.split_sizes, dim=0)]
        assert groups == [j == i for j in range(3)]
        rows = (grad.sum((0, 2)) > 0).nonzero().flatten().tolist()
        assert rows == [10 - d, 10, 10 + d]


def test_dwr_block_stride2_odd_size_and_width_change():
    block = DWRBlock(64, 128, dilations=(1, 3), expansion=1.0, stride=2).eval()
    assert isinstance(block.shortcut, Shortcut)
    assert block(torch.randn(1, 64, 33, 17)).shape == (1, 128, 17, 9)
    same = DWRBlock(128, 128, stride=2).eval()
    assert isinstance(same.shortcut, torch.nn.AvgPool2d)
    assert same(torch.randn(1, 128, 5, 4)).shape == (1, 128, 3, 2)


def test_sir_block():
    """Sec 3.3: 3x3 conv expanding 3x, BN, 1x1 back, residual; no depth-wise conv."""
    block = SIRBlock(64, 64, expansion=3)
    assert block.region.conv.out_channels == 192 and block.fuse.out_channels == 64
    assert not any(m.groups > 1 for m in block.modules() if isinstance(m, torch.nn.Conv2d))
    x = torch.randn(1, 64, 10, 7)
    assert block(x).shape == x.shape
    assert SIRBlock(32, 64, stride=2)(torch.randn(1, 32, 11, 7)).shape == (1, 64, 6, 4)


def test_stem_block_changes_to_bisenetv2():
    """Sec 3.4, Fig. 6a: no activation after the first conv; the last conv keeps its width."""
    stem = StemBlock(64)
    assert not hasattr(stem.conv, "act") and stem.conv.out_channels == 32
    assert stem.fuse.conv.in_channels == stem.fuse.out_channels == 64
    assert stem(torch.randn(1, 3, 33, 50)).shape == (1, 64, 9, 13)


@pytest.mark.parametrize("name", ["dwrseg_base", "dwrseg_large"])
def test_params_and_macs_against_table1(name):
    params, macs = OURS[name]
    c = atrous.complexity(atrous.create_model(name), (512, 1024))
    assert (c["params"], c["macs"]) == (params, macs)
    assert c["macs"] == pytest.approx(TABLE1[name][1], rel=0.01)
    assert c["paper_convention"] == "macs" and c["paper_flops"] == c["macs"]
    card = get_entry(name).card
    assert (card.params_m * 1e6, card.flops_g * 1e9) == pytest.approx(TABLE1[name])


def test_table1_layout():
    model = atrous.create_model("dwrseg_large")
    bb = model.backbone
    sir = [m for m in bb.stage8 if isinstance(m, SIRBlock)]
    dwr16 = [m for m in bb.stage16 if isinstance(m, DWRBlock)]
    dwr32 = [m for m in bb.stage32 if isinstance(m, DWRBlock)]
    assert (len(sir), len(dwr16), len(dwr32)) == (8, 8, 3)
    assert {m.dilations for m in dwr16} == {(1, 3)} and {m.dilations for m in dwr32} == {(1, 3, 5)}
    assert model.decoder.bn.num_features == 320
    assert model.decoder.conv.out_channels == 128 and model.decoder.classifier.out_channels == 19
    x8, x16, x32 = bb(torch.zeros(1, 3, 64, 96))
    assert [tuple(t.shape[1:]) for t in (x8, x16, x32)] == [(64, 8, 12), (128, 4, 6), (128, 2, 3)]


def test_alternative_downsampling_reading():
    """The reading that matches Table 1's parameters but not its MACs (docs/deviations.md)."""
    model = atrous.create_model("dwrseg_base", downsample=("conv", "block", "block"))
    assert sum(p.numel() for p in model.parameters()) == 2_548_243
    with pytest.raises(ValueError, match="downsample"):
        atrous.create_model("dwrseg_base", downsample=("conv", "pool", "block"))


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    model = atrous.create_model("dwrseg_base", num_classes=3).train()
    out = model(torch.randn(2, 3, 35, 50))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 3, 35, 50)
    out.square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_field_of_view():
    assert atrous.field_of_view(atrous.create_model("dwrseg_base")) == 1655
    assert atrous.field_of_view(atrous.create_model("dwrseg_large")) == 2311


def test_no_official_weights():
    assert get_entry("dwrseg_base").official is None and get_entry("dwrseg_large").official is None
    with pytest.raises(ValueError, match="no official code or checkpoints"):
        atrous.from_official("dwrseg_base", {})


def test_dwr_block_exports_to_onnx(tmp_path):
    onnx = pytest.importorskip("onnx")
    block = DWRBlock(64, 64, dilations=(1, 3, 5), expansion=1.5).eval()
    path = tmp_path / "dwr.onnx"
    torch.onnx.export(block, (torch.randn(1, 64, 12, 12),), str(path), dynamo=False)
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert "Split" in ops or "Slice" in ops
