"""Reusable blocks, named as in the papers."""
from .conv import ConvBNAct, resize_to
from .dapf import DAPF, AsymmetricDilatedConv
from .dblock import DBlock, DilatedConv, Shortcut
from .dwr import DWRBlock, SIRBlock, StemBlock, residual_shortcut
from .hardblock import HarDBlock, harmonic_links
from .mda import MDA, BNPReLU
from .se import SE

__all__ = ["ConvBNAct", "DBlock", "DilatedConv", "SE", "Shortcut", "resize_to"]
__all__ += ["DWRBlock", "SIRBlock", "StemBlock", "residual_shortcut"]
__all__ += ["AsymmetricDilatedConv", "BNPReLU", "DAPF", "HarDBlock", "MDA", "harmonic_links"]
