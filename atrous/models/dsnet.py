"""DSNet (Guo et al., "DSNet: A Novel Way to Use Atrous Convolutions in Semantic Segmentation").

Dual-branch network at 1/8 (Sec 3.2, Fig. 2): a context branch of MFACBs (Sec 3.3) and a dilated
Bottleneck, a spatial branch of 3x3 BasicBlocks, three one-way MSAF fusions (Sec 3.4), SPASPP
(Sec 3.5), and a head at 1/4 on the concatenation with a 1/4 skip. Numerics follow the official
``models/dsnet.py`` (github.com/takaniwa/DSNet, commit b3c4dab): ``dsnet`` is its
``dsnet_head128`` (the Cityscapes model of Table 9), ``dsnet_head64`` (BDD, Table 8),
``dsnet_head256`` (ADE20K, Table 7) and ``dsnet_base`` (its ``m``; Tables 7, 8, 10).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from ..nn import MFACB, MSAF, SPASPP, BasicBlock, Bottleneck, ConvBNAct, basic_stage, crop_to, resize_to
from ..official.dsnet import KEYMAP
from .base import FovStep, ModelCard, SegmentationModel, check_sequence
from .registry import register_alias, register_model

F = nn.functional


@dataclass(frozen=True)
class DSNetConfig:
    """A DSNet variant. ``width`` is the C of Fig. 2 (the official ``planes``): the stem and the
    1/4 stage have C channels, 1/8 starts at 2C, both branches run at 4C, the context branch
    widens to 8C in its second stage.

    stem_depth: BasicBlocks at 1/4 and at the 1/8 transition (official ``m``).
    spatial_depth: BasicBlocks per spatial stage (official ``n``: 2 in DSNet, 3 in DSNet-Base).
    context_dilations: the rates of each MFACB, per context stage (layer3, layer4).
    bottleneck_dilation: the 3x3 rate of the context branch's last Bottleneck (layer5).
    spaspp_rates, spaspp_width: SPASPP's stacked rates and its width.
    head_width: the "head" of the variant names: the 3x3 conv after SPASPP and the head's 3x3.
    skip_width: channels of the 1/4 skip (one BasicBlock on the 1/4 features).
    msaf_regions, msaf_reduction: MSAF's region grids and Gonv reduction.
    aux_heads: build the two auxiliary heads of the official training (``seghead_p`` on the
        first fusion, ``seghead_d`` on the second); training mode then returns
        ``(logits, aux_p, aux_d)``. On by default (they are ``training_only``: the eval model and
        its parameter count, the paper's, leave them out). The
        official loss weighs them ``0.6 * OHEM(main) + 0.2 * CE(aux_p) + 0.2 * CE(aux_d)``.
    """

    width: int = 32
    stem_depth: int = 2
    spatial_depth: int = 2
    context_dilations: Sequence[Sequence[Sequence[int]]] = (((2, 2, 2), (2, 2, 2), (3, 3, 3)),
                                                            ((3, 3, 3), (5, 5, 5)))
    bottleneck_dilation: int = 5
    spaspp_rates: Sequence[int] = (6, 12, 18, 24)
    spaspp_width: int = 128
    head_width: int = 128
    skip_width: int = 32
    msaf_regions: Sequence[int] = (1, 4, 8, 16)
    msaf_reduction: int = 4
    aux_heads: bool = True


class SegHead(nn.Module):
    """DSNet's segmentation head: [BN] -> ReLU -> 3x3 conv-BN-ReLU -> 1x1 conv (bias) to the
    classes. The main head (official ``segmenthead_c``) has no leading BN; the auxiliary heads
    (official ``segmenthead``) have one."""

    def __init__(self, in_channels: int, mid_channels: int, num_classes: int, pre_bn: bool = False):
        super().__init__()
        self.pre_bn = nn.BatchNorm2d(in_channels) if pre_bn else None
        self.conv = ConvBNAct(in_channels, mid_channels, 3)
        self.classifier = nn.Conv2d(mid_channels, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pre_bn is not None:
            x = self.pre_bn(x)
        return self.classifier(self.conv(F.relu(x)))


def mfacb_stage(in_channels: int, out_channels: int, dilations) -> nn.Sequential:
    """MFACBs; the first one widens (its atrous layers keep the input width, as in the code)."""
    blocks, width = [], in_channels
    for rates in dilations:
        blocks.append(MFACB(width, width, out_channels, rates))
        width = out_channels
    return nn.Sequential(*blocks)


class DSNet(SegmentationModel):
    """DSNet (Sec 3.2, Fig. 2). Returns logits at the input size (bilinear from 1/4).

    Any H, W works: every stride-2 conv rounds up, and the x2 upsampling of the 1/8 map is cropped
    to the 1/4 skip when ceil(H/4) or ceil(W/4) is odd (the official code then fails in
    ``torch.cat``); where the official code runs, the crop is a no-op and the outputs agree.
    The two training heads are ``training_only``: not part of the eval model.
    """

    classifier_key = "head.classifier.weight"
    # the backbone the paper pretrains on ImageNet (Sec 3.2): both branches and their fusions;
    # the 1/4 skip block, SPASPP and the heads are the decoder
    parts = {"encoder": ("stem.", "layer1.", "layer2.", "context3.", "context4.", "context5.",
                         "spatial3.", "spatial4.", "spatial5.", "proj3.", "proj4.", "proj5.",
                         "fusion3.", "fusion4.", "fusion5."),
             "decoder": ("skip.", "spaspp.", "up.", "head.", "aux_p.", "aux_d.")}

    training_only = ("aux_p", "aux_d")

    def __init__(self, cfg: DSNetConfig, num_classes: int = 19):
        super().__init__()
        self.config, self.num_classes = cfg, num_classes
        c = cfg.width
        ctx3, ctx4 = check_sequence("context_dilations", cfg.context_dilations, 2)
        self.stem = nn.Sequential(ConvBNAct(3, c, 3, stride=2, bias=True),
                                  ConvBNAct(c, c, 3, stride=2, bias=True))
        self.layer1 = basic_stage(c, c, cfg.stem_depth)
        self.skip = BasicBlock(c, cfg.skip_width)
        self.layer2 = basic_stage(c, 2 * c, cfg.stem_depth, stride=2)
        # context branch (atrous): MFACB stages, then a dilated Bottleneck
        self.context3 = mfacb_stage(2 * c, 4 * c, ctx3)
        self.context4 = mfacb_stage(4 * c, 8 * c, ctx4)
        self.context5 = Bottleneck(8 * c, 4 * c, 8 * c, dilation=cfg.bottleneck_dilation)
        # spatial branch (dense 3x3)
        self.spatial3 = basic_stage(2 * c, 4 * c, cfg.spatial_depth)
        self.spatial4 = basic_stage(4 * c, 4 * c, cfg.spatial_depth)
        self.spatial5 = Bottleneck(4 * c, 2 * c, 4 * c)
        # one-way fusions: context -> spatial
        self.proj3 = ConvBNAct(4 * c, 4 * c, 1, act=None)
        self.proj4 = ConvBNAct(8 * c, 4 * c, 1, act=None)
        self.proj5 = ConvBNAct(8 * c, 4 * c, 1, act=None)
        self.fusion3, self.fusion4, self.fusion5 = (
            MSAF(4 * c, cfg.msaf_reduction, cfg.msaf_regions) for _ in range(3))
        self.spaspp = SPASPP(4 * c, cfg.spaspp_width, cfg.spaspp_width, cfg.spaspp_rates)
        self.up = ConvBNAct(cfg.spaspp_width, cfg.head_width, 3, act=None)
        self.head = SegHead(cfg.head_width + cfg.skip_width, cfg.head_width, num_classes)
        if cfg.aux_heads:
            self.aux_p = SegHead(4 * c, 4 * c, num_classes, pre_bn=True)
            self.aux_d = SegHead(4 * c, c, num_classes, pre_bn=True)
        else:
            self.aux_p = self.aux_d = None

    def backbone(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The two branches and their three MSAF fusions (Fig. 2): the 1/4 map, the fused 1/8 map
        (before SPASPP) and the two fusions the training heads read."""
        x4 = self.layer1(self.stem(x))
        x8 = F.relu(self.layer2(F.relu(x4)))
        context = self.context3(x8)
        spatial = self.fusion3(self.spatial3(x8), self.proj3(context))
        aux_p = spatial
        context = self.context4(context)
        spatial = self.fusion4(self.spatial4(F.relu(spatial)), self.proj4(context))
        aux_d = spatial
        context = F.relu(self.context5(context))
        spatial = self.spatial5(F.relu(spatial))
        return x4, F.relu(self.fusion5(spatial, self.proj5(context))), aux_p, aux_d

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The fused 1/8 map before SPASPP: the backbone the paper pretrains on ImageNet (Sec 3.2,
        Table 1)."""
        return self.backbone(x)[1]

    def forward_logits(self, x: torch.Tensor):
        size = x.shape[-2:]
        x4, y, aux_p, aux_d = self.backbone(x)
        skip = self.skip(x4)
        y = self.up(self.spaspp(y))
        y = F.interpolate(y, scale_factor=2, mode="bilinear", align_corners=False)
        y = crop_to(y, skip.shape[-2:])  # odd 1/4 sizes: crop the x2 upsampling
        logits = resize_to(self.head(torch.cat([y, skip], dim=1)), size)
        if not (self.training and self.aux_p is not None):
            return logits
        return logits, resize_to(self.aux_p(aux_p), size), resize_to(self.aux_d(aux_d), size)

    def fov_path(self, include_spaspp: bool = False) -> list[FovStep]:
        """The main path through the context branch: stem, the 1/4 and 1/8-transition BasicBlocks,
        every MFACB's three serial atrous convs, the Bottleneck's dilated 3x3; with
        ``include_spaspp`` also SPASPP's stacked rates (outside the backbone, Sec 3.5)."""
        steps = [FovStep("stem.0", 3, 2), FovStep("stem.1", 3, 2)]
        for stage in ("layer1", "layer2"):
            for i, block in enumerate(getattr(self, stage)):
                steps += [FovStep(f"{stage}.{i}.conv1", 3, block.stride, (block.dilation,)),
                          FovStep(f"{stage}.{i}.conv2", 3, 1, (block.dilation,))]
        for stage in ("context3", "context4"):
            for i, block in enumerate(getattr(self, stage)):
                steps += [FovStep(f"{stage}.{i}.convs.{j}", 3, 1, (d,)) for j, d in enumerate(block.dilations)]
        steps.append(FovStep("context5.conv2", 3, 1, (self.context5.dilation,)))
        if include_spaspp:
            steps += [FovStep(f"spaspp.convs.{j}", 3, 1, (r,)) for j, r in enumerate(self.spaspp.rates)]
        return steps


def _card(reference, params_m, miou, miou_split, dataset, fps, gpu, flops_g=None, resolution=None, notes=""):
    return ModelCard(
        paper="DSNet (Guo et al., 2024)", reference=reference, params_m=params_m, flops_g=flops_g,
        flops_convention="thop.profile ops / 2**30 (conv MACs + 4 x BN numel + adaptive-pool in/out numel)",
        flops_rule="thop", flops_divisor=2**30, flops_resolution=resolution, miou=miou, miou_split=miou_split, dataset=dataset,
        fps=fps, gpu=gpu, notes=notes)


DSNET_CARD = _card("Table 9 (Cityscapes val), Tables 4 and 6", 6.8, 80.4, "Cityscapes val", "cityscapes",
                   81.9, "RTX 4090", flops_g=226.6, resolution=(1024, 2048),
                   notes="official dsnet_head128; 37.6 FPS on an RTX 3090 (Table 9, mmcv rows)")
HEAD64_CARD = _card("Table 8 (BDD10K val)", 6.6, 62.8, "BDD10K val", "bdd", 172.2, "RTX 4090",
                    resolution=(720, 1280), notes="official dsnet_head64; FPS at 1280x720")
HEAD256_CARD = _card("Table 7 (ADE20K val)", None, 40.0, "ADE20K val", "ade20k", 179.2, "RTX 3090",
                     resolution=(512, 512), notes="official dsnet_head256; FPS at 512x512; no params given")
BASE_CARD = _card("Table 10 (Cityscapes val), Tables 7 and 8", 37.5, 82.0, "Cityscapes val", "cityscapes",
                  None, "", resolution=(1024, 2048),
                  notes="official 'm' (DSNet-Base); ADE20K 43.4 mIoU at 66.8 FPS on an RTX 3090 (Table 7); "
                        "BDD 64.6 mIoU (Table 8)")

HEAD128 = DSNetConfig()
HEAD64 = DSNetConfig(head_width=64)
HEAD256 = DSNetConfig(spaspp_width=256, head_width=256, skip_width=64)
BASE = DSNetConfig(width=64, spatial_depth=3,
                   context_dilations=(((2, 2, 2), (2, 2, 2), (3, 3, 3)), ((3, 3, 3), (5, 5, 5), (5, 5, 5))),
                   spaspp_width=256, head_width=256, skip_width=64)

register_model("dsnet", DSNet, HEAD128, DSNET_CARD, official=KEYMAP)
register_alias("dsnet_head128", "dsnet")
register_model("dsnet_head64", DSNet, HEAD64, HEAD64_CARD, official=KEYMAP)
register_model("dsnet_head256", DSNet, HEAD256, HEAD256_CARD, default_classes=150, official=KEYMAP)
register_model("dsnet_base", DSNet, BASE, BASE_CARD, official=KEYMAP)
