"""RegSeg (Gao, "Rethinking Dilated Convolution for Real-time Semantic Segmentation").

Backbone of D blocks at 1/4, 1/8 and 1/16 (Sec 3.3, Table 1) and the decoder of Sec 3.5 / Fig. 8.
``regseg`` is the official ``exp48_decoder26`` (the paper's Cityscapes model), ``regseg_large``
the official ``exp53_decoder29``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from ..errors import UserError
from ..nn import ConvBNAct, DBlock, resize_to
from ..official.regseg import KEYMAP
from .base import FovStep, ModelCard, SegmentationModel, check_sequence
from .registry import register_model

EXP48_DILATIONS = ((1,), (1, 2)) + ((1, 4),) * 4 + ((1, 14),) * 7


@dataclass(frozen=True)
class RegSegConfig:
    """A RegSeg variant.

    dilations: one entry per stride-1 D block at 1/16 (13 in the paper, Table 2); each entry lists
        the dilation of every branch of that block.
    widths: output channels at 1/4, 1/8, 1/16 and of the last 1/16 block (48, 128, 256, 320).
    depths: number of D blocks at 1/4 and at 1/8 (1 and 3 in Table 1).
    decoder_widths: (1x1 head width at 1/16 and 1/8, 1x1 head width at 1/4, 3x3 conv width):
        (128, 8, 64) in Fig. 8.
    """

    dilations: Sequence[Sequence[int]] = EXP48_DILATIONS
    stem_width: int = 32
    widths: Sequence[int] = (48, 128, 256, 320)
    depths: Sequence[int] = (1, 3)
    group_width: int = 16
    decoder_widths: Sequence[int] = (128, 8, 64)


class RegSegBackbone(nn.Module):
    """3x3 stride-2 stem and D blocks (Table 1). Returns the 1/4, 1/8 and 1/16 maps."""

    def __init__(self, cfg: RegSegConfig):
        super().__init__()
        w4, w8, w16, w_last = check_sequence("widths", cfg.widths, 4)
        d4, d8 = check_sequence("depths", cfg.depths, 2)
        dilations = [tuple(int(r) for r in d) for d in cfg.dilations]
        if not dilations:
            raise UserError("dilations: need at least one stride-1 block at 1/16")
        gw = cfg.group_width
        self.stem = ConvBNAct(3, cfg.stem_width, 3, stride=2)

        def stage(in_w, out_w, depth, block_dilations, last_w=None):
            blocks = [DBlock(in_w, out_w, (1,), gw, stride=2)]
            for i in range(1, depth):
                width = last_w if (last_w and i == depth - 1) else out_w
                blocks.append(DBlock(out_w, width, block_dilations[i - 1], gw))
            return nn.Sequential(*blocks)

        self.stage4 = stage(cfg.stem_width, w4, d4, [(1,)] * d4)
        self.stage8 = stage(w4, w8, d8, [(1,)] * d8)
        self.stage16 = stage(w8, w16, 1 + len(dilations), dilations, last_w=w_last)
        self.channels = (w4, w8, w_last)

    def forward(self, x: torch.Tensor):
        x4 = self.stage4(self.stem(x))
        x8 = self.stage8(x4)
        x16 = self.stage16(x8)
        return x4, x8, x16

    def fov_path(self) -> list[FovStep]:
        steps = [FovStep("stem", 3, 2)]
        for stage in ("stage4", "stage8", "stage16"):
            for i, block in enumerate(getattr(self, stage)):
                steps.append(FovStep(f"{stage}.{i}", 3, block.stride, block.dilations))
        return steps


class RegSegDecoder(nn.Module):
    """Decoder of RegSeg Sec 3.5, Fig. 8 (the official Exp2_Decoder26/29): 1x1 heads on 1/16, 1/8
    and 1/4; upsample 1/16 and add to 1/8; 3x3 conv; upsample and concatenate
    ``[upsampled, head4]`` (the official order); 3x3 conv; 1x1 classifier with bias."""

    def __init__(self, channels, num_classes: int, widths: Sequence[int]):
        super().__init__()
        c4, c8, c16 = channels
        head, head4, conv = check_sequence("decoder_widths", widths, 3)
        self.head16 = ConvBNAct(c16, head, 1)
        self.head8 = ConvBNAct(c8, head, 1)
        self.head4 = ConvBNAct(c4, head4, 1)
        self.conv8 = ConvBNAct(head, conv, 3)
        self.conv4 = ConvBNAct(conv + head4, conv, 3)
        self.classifier = nn.Conv2d(conv, num_classes, 1)

    def forward(self, x4, x8, x16):
        x8 = self.head8(x8)
        x8 = self.conv8(x8 + resize_to(self.head16(x16), x8.shape[-2:]))
        x4 = self.head4(x4)
        x4 = torch.cat([resize_to(x8, x4.shape[-2:]), x4], dim=1)
        return self.classifier(self.conv4(x4))


class RegSeg(SegmentationModel):
    """RegSeg (Sec 3.3 backbone, Sec 3.5 decoder): backbone + decoder; logits are upsampled
    (bilinear) from 1/4 to the input size.
    Any H, W works: strides round up (ceil) and every resize targets the exact skip size."""

    classifier_key = "decoder.classifier.weight"
    parts = {"encoder": ("backbone.",), "decoder": ("decoder.",)}

    def __init__(self, cfg: RegSegConfig, num_classes: int = 19):
        super().__init__()
        self.config = cfg
        self.num_classes = num_classes
        self.backbone = RegSegBackbone(cfg)
        self.decoder = RegSegDecoder(self.backbone.channels, num_classes, cfg.decoder_widths)

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        return resize_to(self.decoder(*self.backbone(x)), x.shape[-2:])

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone's 1/16 map (what ImageNet pretraining classifies; the paper itself trains
        from scratch, Sec 4.2)."""
        return self.backbone(x)[-1]

    def fov_path(self) -> list[FovStep]:
        return self.backbone.fov_path()


REGSEG_CARD = ModelCard(
    paper="RegSeg (Gao, 2021)", reference="Table 8 (Cityscapes test), Sec 4.6",
    params_m=3.34, flops_g=39.1, flops_convention="fvcore GFLOPs (conv MACs + BN/upsample/pool elements)",
    flops_rule="fvcore",
    flops_resolution=(1024, 2048), miou=78.3, miou_split="Cityscapes test", dataset="cityscapes",
    fps=30.0, gpu="T4", notes="official exp48_decoder26; val mIoU 78.5 (Table 7)")
REGSEG_LARGE_CARD = ModelCard(
    paper="RegSeg (Gao, 2021)", reference="official code exp53_decoder29 (RegSeg-Large in the repo)",
    dataset="cityscapes", notes="not in the paper's tables: the official repository's larger model")

register_model("regseg", RegSeg, RegSegConfig(), REGSEG_CARD, official=KEYMAP)
register_model("regseg_large", RegSeg,
               RegSegConfig(widths=(48, 120, 336, 384), depths=(2, 6), group_width=24,
                            decoder_widths=(256, 16, 128)),
               REGSEG_LARGE_CARD, official=KEYMAP)
