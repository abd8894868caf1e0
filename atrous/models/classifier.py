"""A segmentation network's encoder with a classification head: the papers' ImageNet step
(DSNet Sec 3.2 and Table 1: the backbone pretrained on ImageNet; FASSD-Net Sec III-A: HarDNet-68's
ImageNet weights; RegSeg Sec 4.2 and DWRSeg train from scratch, atrous offers the step anyway).

The classifier holds the segmentation model's encoder modules under their own names, so the
encoder keys of its state dict are exactly the segmentation model's: a pretrained file initialises
``create_model(name)`` with ``model.init: {path: FILE, part: encoder}`` and every encoder tensor
loads. The features are the segmentation class's own :meth:`encode`, then global average pooling
and a linear layer (FASSD-Net: HarDNet-68's head, dropout 0.1 before the linear layer).
"""
from __future__ import annotations

import torch
from torch import nn

from .registry import create_model

# Dropout before the linear layer of the official ImageNet heads (HarDNet-68: 0.1).
HEAD_DROPOUT = {"FASSDNet": 0.1}


class EncoderClassifier(nn.Module):
    """``name``'s encoder (its ``parts["encoder"]`` modules) + GAP + linear to ``num_classes``."""

    def __init__(self, name: str, num_classes: int = 1000, **options):
        super().__init__()
        segmentation = create_model(name, **options)
        prefixes = segmentation.parts["encoder"]
        self.variant, self.num_classes, self.config = name, int(num_classes), segmentation.config
        self.parts = {"encoder": prefixes}
        for child, module in list(segmentation.named_children()):
            if f"{child}." in prefixes:
                self.add_module(child, module)  # the same module objects, under the same names
            else:
                delattr(segmentation, child)  # the decoder is not needed
        object.__setattr__(self, "segmentation", segmentation)  # not a submodule: no key prefix
        with torch.no_grad():
            self.eval()  # BatchNorm in training mode cannot take the 1-image probe
            width = self.features(torch.zeros(1, 3, 64, 64)).shape[1]
            self.train()
        self.dropout = nn.Dropout(HEAD_DROPOUT.get(type(segmentation).__name__, 0.0))
        self.classifier_head = nn.Linear(width, self.num_classes)
        self.classifier_key = "classifier_head.weight"

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's last map, by the segmentation model's own ``encode``."""
        self.segmentation.train(self.training)
        return self.segmentation.encode(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.features(x).mean(dim=(2, 3))
        return self.classifier_head(self.dropout(pooled))
