"""Reusable blocks, named as in the papers."""
from .conv import ConvBNAct, resize_to
from .dblock import DBlock, DilatedConv, Shortcut
from .fractional import FractionalDilatedConv
from .se import SE

__all__ = ["ConvBNAct", "DBlock", "DilatedConv", "FractionalDilatedConv", "SE", "Shortcut", "resize_to"]
