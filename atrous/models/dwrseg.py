"""DWRSeg (Wei et al., "DWRSeg: Rethinking Efficient Acquisition of Multi-scale Contextual
Information for Real-time Semantic Segmentation").

Stem at 1/4, SIR modules at 1/8, 2-branch DWR modules at 1/16, 3-branch DWR modules at 1/32 and
the FCN-like decoder (Sec 3.1-3.4, Fig. 3, Table 1). No official code or weights exist; every
choice the paper leaves open is listed in docs/deviations.md (section DWRSeg), and docs/models.md
compares the parameters and MACs of the readings considered with Table 1.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from ..errors import UserError
from ..nn import ConvBNAct, DWRBlock, SIRBlock, StemBlock, resize_to
from .base import FovStep, ModelCard, SegmentationModel, check_sequence
from .registry import register_model

# Table 1's "Flops" are multiply-accumulates of the convolutions (13.62 G for DWRSeg-B at
# 3x512x1024 is what the architecture's convolutions cost; twice that would be 27 G).

DOWNSAMPLE_KINDS = ("conv", "block")


@dataclass(frozen=True)
class DWRSegConfig:
    """A DWRSeg variant (Table 1).

    widths: output channels of the SIR stage (1/8) and the two DWR stages (1/16, 1/32).
    depths: modules per stage (DWRSeg-B 7, 3, 3; DWRSeg-L 8, 8, 3).
    dilations: dilation of each branch of the DWR modules at 1/16 and at 1/32.
    ratios: output channel ratio of the branches at 1/16 and 1/32 (2:1 and 2:1:1).
    expansions: region-residualization width / module width at 1/16 and 1/32 (1.0, 1.5): one
        group of half the module width per branch.
    sir_expansion: SIR's expansion (lambda = 3).
    downsample: how each of the three stages halves the resolution: "conv" (a 3x3 stride-2
        conv + BN + ReLU before the stage's modules) or "block" (the first module has stride 2 and
        counts among ``depths``). The paper does not say; see docs/deviations.md.
    head_width: channels of the SegHead's 3x3 conv (128).
    """

    stem_width: int = 64
    widths: Sequence[int] = (64, 128, 128)
    depths: Sequence[int] = (7, 3, 3)
    dilations: Sequence[Sequence[int]] = ((1, 3), (1, 3, 5))
    ratios: Sequence[Sequence[int]] = ((2, 1), (2, 1, 1))
    expansions: Sequence[float] = (1.0, 1.5)
    sir_expansion: int = 3
    downsample: Sequence[str] = ("conv", "conv", "block")
    head_width: int = 128


def _stage(kind: str, in_w: int, out_w: int, depth: int, make_block) -> nn.Sequential:
    """``depth`` modules at a new stride of 2, entered by a stride-2 conv or by a stride-2 first
    module (``make_block(in_w, stride)``)."""
    if kind not in DOWNSAMPLE_KINDS:
        raise UserError(f"downsample: expected one of {DOWNSAMPLE_KINDS}, got {kind!r}")
    if depth < 1:
        raise UserError(f"depths: every stage needs at least one module, got {depth}")
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    if kind == "conv":
        layers["down"] = ConvBNAct(in_w, out_w, 3, stride=2)
        in_w = out_w
    for i in range(depth):
        stride = 2 if (kind == "block" and i == 0) else 1
        layers[str(i)] = make_block(in_w if i == 0 else out_w, stride)
    return nn.Sequential(layers)


class DWRSegBackbone(nn.Module):
    """Encoder of DWRSeg Sec 3, Fig. 3 and Table 1: stem, SIR stage (1/8), DWR stages (1/16,
    1/32); returns the three stage outputs."""

    def __init__(self, cfg: DWRSegConfig):
        super().__init__()
        w8, w16, w32 = check_sequence("widths", cfg.widths, 3)
        d8, d16, d32 = check_sequence("depths", cfg.depths, 3)
        dil16, dil32 = check_sequence("dilations", cfg.dilations, 2)
        ratio16, ratio32 = check_sequence("ratios", cfg.ratios, 2)
        exp16, exp32 = check_sequence("expansions", cfg.expansions, 2)
        down8, down16, down32 = check_sequence("downsample", cfg.downsample, 3)
        self.stem = StemBlock(cfg.stem_width)
        self.stage8 = _stage(down8, cfg.stem_width, w8, d8,
                             lambda i, s: SIRBlock(i, w8, cfg.sir_expansion, stride=s))
        self.stage16 = _stage(down16, w8, w16, d16,
                              lambda i, s: DWRBlock(i, w16, dil16, exp16, ratio16, stride=s))
        self.stage32 = _stage(down32, w16, w32, d32,
                              lambda i, s: DWRBlock(i, w32, dil32, exp32, ratio32, stride=s))
        self.channels = (w8, w16, w32)

    def forward(self, x: torch.Tensor):
        x8 = self.stage8(self.stem(x))
        x16 = self.stage16(x8)
        return x8, x16, self.stage32(x16)

    def fov_path(self) -> list[FovStep]:
        # stem: conv 3x3/2, then the 3x3/2 conv of its left branch (the max pool beside it has the
        # same 3x3/2 footprint; the 1x1 conv adds nothing), then the 3x3 fuse conv
        steps = [FovStep("stem.conv", 3, 2), FovStep("stem.left", 3, 2), FovStep("stem.fuse", 3, 1)]
        for stage in ("stage8", "stage16", "stage32"):
            for name, block in getattr(self, stage).named_children():
                if isinstance(block, ConvBNAct):
                    steps.append(FovStep(f"{stage}.{name}", 3, 2))
                    continue
                steps.append(FovStep(f"{stage}.{name}.region", 3, block.stride))
                if isinstance(block, DWRBlock):
                    steps.append(FovStep(f"{stage}.{name}.semantic", 3, 1, block.dilations))
        return steps


class DWRSegDecoder(nn.Module):
    """FCN-like decoder (Sec 3.4, Fig. 3 and 6b, Table 1): the 1/16 and 1/32 maps are upsampled
    (bilinear) to the 1/8 map and concatenated after it (64 + 128 + 128 = 320 channels), BN, then
    the SegHead: 3x3 conv + BN + ReLU to ``head_width`` and a 1x1 conv (with bias) to the
    classes."""

    def __init__(self, channels: Sequence[int], num_classes: int, head_width: int = 128):
        super().__init__()
        merged = sum(channels)
        self.bn = nn.BatchNorm2d(merged)
        self.conv = ConvBNAct(merged, head_width, 3)
        self.classifier = nn.Conv2d(head_width, num_classes, 1)

    def forward(self, x8, x16, x32) -> torch.Tensor:
        size = x8.shape[-2:]
        x = torch.cat([x8, resize_to(x16, size), resize_to(x32, size)], dim=1)
        return self.classifier(self.conv(self.bn(x)))


class DWRSeg(SegmentationModel):
    """DWRSeg (Sec 3, Fig. 3; decoder and Seg-Head of Fig. 6b): backbone + decoder; the 1/8 logits
    are upsampled (bilinear) to the input size.
    Any H, W >= 32 works without padding: every stride-2 conv, pool and shortcut rounds up, and
    the decoder resizes to the exact 1/8 size."""

    classifier_key = "decoder.classifier.weight"
    parts = {"encoder": ("backbone.",), "decoder": ("decoder.",)}

    def __init__(self, cfg: DWRSegConfig, num_classes: int = 19):
        super().__init__()
        self.config = cfg
        self.num_classes = num_classes
        self.backbone = DWRSegBackbone(cfg)
        self.decoder = DWRSegDecoder(self.backbone.channels, num_classes, cfg.head_width)

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        return resize_to(self.decoder(*self.backbone(x)), x.shape[-2:])

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone's 1/32 map (what ImageNet pretraining classifies)."""
        return self.backbone(x)[-1]

    def fov_path(self) -> list[FovStep]:
        return self.backbone.fov_path()


_CONVENTION = "multiply-accumulates of the convolutions ('Flops' in Table 1)"
_NOTES = ("no official code or weights; {v}50 (512x1024 input): {m50} mIoU at {f50} FPS; "
          "{v}75 (768x1536): {m75} mIoU at {f75} FPS (Table 3, TensorRT, batch 1); "
          "CamVid test: {mc} mIoU at {fc} FPS (Table 4, pretrained on Cityscapes)")

DWRSEG_BASE_CARD = ModelCard(
    paper="DWRSeg (Wei et al., 2022)", reference="Table 1 (params, FLOPs), Table 3 (Cityscapes test)",
    params_m=2.54, flops_g=13.62, flops_convention=_CONVENTION, flops_rule="macs",
    flops_resolution=(512, 1024), miou=72.7, miou_split="Cityscapes test (DWRSeg-B50, 512x1024)",
    dataset="cityscapes", fps=319.5, gpu="GTX 1080 Ti",
    notes=_NOTES.format(v="DWRSeg-B", m50=72.7, f50=319.5, m75=75.6, f75=151.7, mc=76.5, fc=237.2))
DWRSEG_LARGE_CARD = ModelCard(
    paper="DWRSeg (Wei et al., 2022)", reference="Table 1 (params, FLOPs), Table 3 (Cityscapes test)",
    params_m=3.53, flops_g=16.42, flops_convention=_CONVENTION, flops_rule="macs",
    flops_resolution=(512, 1024), miou=73.1, miou_split="Cityscapes test (DWRSeg-L50, 512x1024)",
    dataset="cityscapes", fps=256.2, gpu="GTX 1080 Ti",
    notes=_NOTES.format(v="DWRSeg-L", m50=73.1, f50=256.2, m75=76.3, f75=123.4, mc=77.5, fc=189.2))

register_model("dwrseg_base", DWRSeg, DWRSegConfig(), DWRSEG_BASE_CARD, official=None)
register_model("dwrseg_large", DWRSeg, DWRSegConfig(depths=(8, 8, 3)), DWRSEG_LARGE_CARD, official=None)
