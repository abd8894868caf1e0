"""Harmonic dense block (HarDNet, Chao et al. 2019), the encoder and decoder block of FASSD-Net
(FASSD-Net Sec III-A, Fig. 2, Table II)."""
from __future__ import annotations

import torch
from torch import nn

from ..errors import UserError
from .conv import ConvBNAct


def harmonic_links(layer: int, growth_rate: int, multiplier: float) -> tuple[int, list[int]]:
    """Output width and inputs of layer ``layer`` (1-based; 0 is the block input) of a HarDBlock.

    Layer ``l`` reads every earlier layer ``l - 2**i`` with ``2**i`` dividing ``l``; its width is
    ``growth_rate * multiplier**(links - 1)`` rounded to an even number, as in the official
    ``HarDBlock.get_link`` (so a layer with more links, e.g. every 4th, is wider).
    """
    links, width = [], float(growth_rate)
    i = 0
    while 2 ** i <= layer:
        step = 2 ** i
        if layer % step == 0:
            links.append(layer - step)
            if i > 0:
                width *= multiplier
        i += 1
    return int(int(width + 1) / 2) * 2, links


class HarDBlock(nn.Module):
    """Harmonic dense block (HarDNet Sec 3, used by FASSD-Net Table II): ``num_layers`` 3x3
    conv-BN-ReLU layers; layer ``l`` takes the concatenation of layers ``l - 2**i`` (``2**i``
    divides ``l``, layer 0 is the input). The output concatenates the odd layers and the last one
    (the input is not kept), as in FC-HarDNet / FASSD-Net (``keepBase=False``).

    With FASSD-Net's multiplier 1.7: ``HarDBlock(48, 10, 1.7, 4)`` has layers of 10, 18, 10, 28
    channels and outputs 48; ``HarDBlock(160, 24, 1.7, 8)`` outputs 214.
    """

    def __init__(self, in_channels: int, growth_rate: int, multiplier: float, num_layers: int):
        super().__init__()
        if num_layers < 1:
            raise UserError(f"num_layers: a HarDBlock needs at least one layer, got {num_layers}")
        widths = [in_channels]
        self.links: list[list[int]] = []
        layers = []
        for layer in range(1, num_layers + 1):
            width, links = harmonic_links(layer, growth_rate, multiplier)
            layers.append(ConvBNAct(sum(widths[k] for k in links), width, 3))
            widths.append(width)
            self.links.append(links)
        self.layers = nn.ModuleList(layers)
        self.kept = [k for k in range(1, num_layers + 1) if k % 2 == 1 or k == num_layers]
        self.out_channels = sum(widths[k] for k in self.kept)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = [x]
        for layer, links in zip(self.layers, self.links):
            inputs = [outputs[k] for k in links]
            outputs.append(layer(inputs[0] if len(inputs) == 1 else torch.cat(inputs, dim=1)))
        return torch.cat([outputs[k] for k in self.kept], dim=1)
