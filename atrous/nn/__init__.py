"""Reusable blocks, named as in the papers."""
from .conv import ConvBNAct, crop_to, resize_to
from .dapf import DAPF, AsymmetricDilatedConv
from .dblock import DBlock, DilatedConv, Shortcut
from .dwr import DWRBlock, SIRBlock, StemBlock, residual_shortcut
from .hardblock import HarDBlock, harmonic_links
from .mda import MDA, BNPReLU
from .mfacb import MFACB
from .msaf import MSAF, Gonv
from .fractional import FractionalDilatedConv
from .resnet import BasicBlock, Bottleneck, basic_stage, projection
from .se import SE
from .spaspp import SPASPP, GlobalPoolBranch

__all__ = ["AsymmetricDilatedConv", "BNPReLU", "BasicBlock", "Bottleneck", "ConvBNAct", "DAPF", "DBlock",
           "DWRBlock", "DilatedConv", "FractionalDilatedConv", "GlobalPoolBranch", "Gonv", "HarDBlock", "MDA", "MFACB", "MSAF", "SE",
           "SIRBlock", "SPASPP", "Shortcut", "StemBlock", "basic_stage", "harmonic_links", "projection",
           "residual_shortcut", "resize_to", "crop_to"]
