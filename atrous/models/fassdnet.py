"""FASSD-Net (Rosas-Arias et al., "Fast and Accurate Real-Time Semantic Segmentation with Dilated
Asymmetric Convolutions").

FC-HarDNet-70 cut to four encoder stages (down to 1/32), DAPF at the end of the encoder and one
MDA module per decoder stage (Sec III, Fig. 2, Table II). ``fassdnet`` is the paper's main model;
``fassdnet_l1`` strides its first stem conv by 3 (Table II, note *); ``fassdnet_l2`` strides the
second stem conv by 2 (note **) and replaces the decoder HarDBlocks with 3x3 convs of 64 channels
(Sec IV-C). All three follow the official code (github.com/GibranBenitez/FASSD-Net, d762458).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from ..nn import DAPF, MDA, ConvBNAct, HarDBlock, crop_to, resize_to
from ..official.fassdnet import KEYMAP
from .base import FovStep, ModelCard, SegmentationModel, check_sequence
from .registry import register_model


@dataclass(frozen=True)
class FASSDNetConfig:
    """A FASSD-Net variant (defaults: FASSD-Net, Table II).

    stem_widths, stem_strides: the four 3x3 stem convs (16, 24, 32, 48; strides 2, 1, 2, 1).
    widths: output of each encoder stage's 1x1 transition conv (64, 96, 160, 224).
    growth_rates, depths: HarDBlock growth rate and number of layers per encoder stage; decoder
        stage j reuses those of encoder stage 3 - j (FC-HarDNet's layout).
    multiplier: HarDBlock width multiplier (1.7).
    dapf_alpha, dapf_dilations: DAPF compression factor (2) and branch dilations (12, 24, 36).
    mda_dilations: dilation of each MDA's asymmetric branch, deepest first (8, 4, 2).
    decoder_conv_width: 0 for HarDBlocks in the decoder; else each decoder block is one 3x3
        conv-BN-ReLU of this width (64 for FASSD-Net-L2).
    """

    stem_widths: Sequence[int] = (16, 24, 32, 48)
    stem_strides: Sequence[int] = (2, 1, 2, 1)
    widths: Sequence[int] = (64, 96, 160, 224)
    growth_rates: Sequence[int] = (10, 16, 18, 24)
    depths: Sequence[int] = (4, 4, 8, 8)
    multiplier: float = 1.7
    dapf_alpha: int = 2
    dapf_dilations: Sequence[int] = (12, 24, 36)
    mda_dilations: Sequence[int] = (8, 4, 2)
    decoder_conv_width: int = 0


class EncoderStage(nn.Module):
    """``[avgpool 2x2] -> HarDBlock -> 1x1 conv-BN-ReLU`` (Table II, Encoder B1-B4). Returns the
    transition output and the HarDBlock output (the skip to the decoder)."""

    def __init__(self, in_channels: int, out_channels: int, growth_rate: int, multiplier: float,
                 depth: int, pool: bool):
        super().__init__()
        self.pool = nn.AvgPool2d(2, 2) if pool else None
        self.block = HarDBlock(in_channels, growth_rate, multiplier, depth)
        self.transition = ConvBNAct(self.block.out_channels, out_channels, 1)

    def forward(self, x: torch.Tensor):
        if self.pool is not None:
            x = self.pool(x)
        skip = self.block(x)
        return self.transition(skip), skip


class DecoderStage(nn.Module):
    """One decoder stage (Fig. 2, Table II Decoder B1-B3): bilinear upsampling (align_corners=True)
    to the skip's size, concatenation ``[upsampled, skip]``, a 1x1 conv-BN-ReLU halving the
    channels (the first 1x1 of the paper's MDA, Fig. 4), :class:`~atrous.nn.MDA`, then a HarDBlock
    (or one 3x3 conv-BN-ReLU for FASSD-Net-L2)."""

    def __init__(self, in_channels: int, skip_channels: int, dilation: int, block: tuple,
                 multiplier: float, conv_width: int):
        super().__init__()
        width = (in_channels + skip_channels) // 2
        self.fuse = ConvBNAct(in_channels + skip_channels, width, 1)
        self.mda = MDA(width, dilation)
        if conv_width:
            self.block = ConvBNAct(width, conv_width, 3)
        else:
            self.block = HarDBlock(width, block[0], multiplier, block[1])
        self.out_channels = self.block.out_channels

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = torch.cat([resize_to(x, skip.shape[-2:], align_corners=True), skip], dim=1)
        return self.block(self.mda(self.fuse(x)))


class FASSDNet(SegmentationModel):
    """FASSD-Net (Sec III, Fig. 2, Table II): stem of four 3x3 convs, four HarDNet encoder stages
    (1/4 .. 1/32 for the default stem), DAPF, three decoder stages with MDA, a 1x1 classifier
    (with bias) at the stem's resolution and a bilinear (align_corners=True) upsampling to the
    input size. One output in training and eval (no auxiliary heads, as in the official code).

    The official network runs on any size whose stem output is at least 8 pixels (so the 1/32 map
    is not empty); smaller inputs (down to 32, e.g. for the L1/L2 stems) are zero-padded at the
    bottom/right and the logits cropped back.
    """

    classifier_key = "classifier.weight"
    # HarDNet-68's ImageNet layers (FASSD-Net Sec III-A): the stem convs and the four stages
    parts = {"encoder": ("stem.", "encoder."), "decoder": ("dapf.", "decoder.", "classifier.")}

    def __init__(self, cfg: FASSDNetConfig, num_classes: int = 19):
        super().__init__()
        self.config = cfg
        self.num_classes = num_classes
        stem_widths = check_sequence("stem_widths", cfg.stem_widths, 4)
        self.stem_strides = tuple(int(s) for s in check_sequence("stem_strides", cfg.stem_strides, 4))
        widths = check_sequence("widths", cfg.widths, 4)
        growth = check_sequence("growth_rates", cfg.growth_rates, 4)
        depths = check_sequence("depths", cfg.depths, 4)
        mda_dilations = check_sequence("mda_dilations", cfg.mda_dilations, 3)

        ins = (3, *stem_widths[:-1])
        self.stem = nn.Sequential(*(ConvBNAct(i, o, 3, stride=s)
                                    for i, o, s in zip(ins, stem_widths, self.stem_strides)))
        stages, skips, ch = [], [], stem_widths[-1]
        for i in range(4):
            stage = EncoderStage(ch, widths[i], growth[i], cfg.multiplier, depths[i], pool=i > 0)
            stages.append(stage)
            skips.append(stage.block.out_channels)
            ch = widths[i]
        self.encoder = nn.ModuleList(stages)
        self.dapf = DAPF(ch, cfg.dapf_alpha, cfg.dapf_dilations)
        decoder = []
        for j, i in enumerate((2, 1, 0)):
            stage = DecoderStage(ch, skips[i], mda_dilations[j], (growth[i], depths[i]),
                                 cfg.multiplier, cfg.decoder_conv_width)
            decoder.append(stage)
            ch = stage.out_channels
        self.decoder = nn.ModuleList(decoder)
        self.classifier = nn.Conv2d(ch, num_classes, 1)
        self.native_min_size = self._native_min_size()

    def stem_size(self, n: int) -> int:
        """Side of the stem output for an input side ``n``."""
        for s in self.stem_strides:  # 3x3 conv, padding 1
            n = (n - 1) // s + 1
        return n

    def _native_min_size(self) -> int:
        n = 1
        while self.stem_size(n) // 8 < 1:  # three 2x2 average pools down to the DAPF input
            n += 1
        return n

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        lo = self.native_min_size
        if h < lo or w < lo:
            x = nn.functional.pad(x, (0, max(lo - w, 0), 0, max(lo - h, 0)))
        x = self.stem(x)
        skips = []
        for stage in self.encoder:
            x, skip = stage(x)
            skips.append(skip)
        x = self.dapf(x)
        for stage, skip in zip(self.decoder, reversed(skips[:-1])):
            x = stage(x, skip)
        logits = self.classifier(x)
        out_h, out_w = max(h, lo), max(w, lo)
        logits = resize_to(logits, (out_h, out_w), align_corners=True)
        return crop_to(logits, (h, w))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """HarDNet-68's last map (FASSD-Net Sec III-A: the encoder is HarDNet-68's, pretrained on
        ImageNet): the stem and the four stages, without DAPF."""
        x = self.stem(x)
        for stage in self.encoder:
            x, _ = stage(x)
        return x

    def fov_path(self) -> list[FovStep]:
        steps = [FovStep(f"stem.{i}", 3, s) for i, s in enumerate(self.stem_strides)]
        for i, stage in enumerate(self.encoder):
            if stage.pool is not None:
                steps.append(FovStep(f"encoder.{i}.pool", 2, 2))
            steps += [FovStep(f"encoder.{i}.block.layers.{j}", 3, 1) for j in range(len(stage.block.layers))]
            steps.append(FovStep(f"encoder.{i}.transition", 1, 1))
        steps.append(FovStep("dapf", 3, 1, self.dapf.dilations))
        return steps


_PAPER = "FASSD-Net (Rosas-Arias et al.)"
_FLOPS = "ptflops GFLOPs, really GMACs (conv MACs + bias/BN/ReLU/PReLU/avg-pool elements)"
FASSDNET_CARD = ModelCard(
    paper=_PAPER, reference="Table IV (Cityscapes val), Table I, Table II",
    params_m=2.85, flops_g=45.1, flops_convention=_FLOPS, flops_rule="ptflops",
    flops_resolution=(1024, 2048), miou=78.8, miou_split="Cityscapes val", dataset="cityscapes",
    fps=41.1, gpu="GTX 1080 Ti", notes="1024x2048 input, PyTorch without TensorRT; 78.2 val mIoU "
    "before the final 30k-iteration fine-tuning (Table I)")
FASSDNET_L1_CARD = ModelCard(
    paper=_PAPER, reference="Table IV (Cityscapes val), Table II note *",
    params_m=2.85, flops_g=20.0, flops_convention=_FLOPS, flops_rule="ptflops",
    flops_resolution=(1024, 2048), miou=76.3, miou_split="Cityscapes val", dataset="cityscapes",
    fps=78.0, gpu="GTX 1080 Ti", notes="first stem conv with stride 3 (logits at 1/6)")
FASSDNET_L2_CARD = ModelCard(
    paper=_PAPER, reference="Table IV (Cityscapes val), Table II note **, Sec IV-C",
    params_m=2.3, flops_g=8.7, flops_convention=_FLOPS, flops_rule="ptflops",
    flops_resolution=(1024, 2048), miou=74.1, miou_split="Cityscapes val", dataset="cityscapes",
    fps=133.1, gpu="GTX 1080 Ti", notes="second stem conv with stride 2 (logits at 1/8); decoder "
    "HarDBlocks replaced by 3x3 convs of 64 channels")

register_model("fassdnet", FASSDNet, FASSDNetConfig(), FASSDNET_CARD, official=KEYMAP)
register_model("fassdnet_l1", FASSDNet, FASSDNetConfig(stem_strides=(3, 1, 2, 1)), FASSDNET_L1_CARD,
               official=KEYMAP)
register_model("fassdnet_l2", FASSDNet, FASSDNetConfig(stem_strides=(2, 2, 2, 1), decoder_conv_width=64),
               FASSDNET_L2_CARD, official=KEYMAP)
