"""Reusable blocks, named as in the papers."""
from .conv import ConvBNAct, resize_to
from .dblock import DBlock, DilatedConv, Shortcut
from .mfacb import MFACB
from .msaf import MSAF, Gonv
from .resnet import BasicBlock, Bottleneck, basic_stage, projection
from .se import SE
from .spaspp import SPASPP, GlobalPoolBranch

__all__ = ["BasicBlock", "Bottleneck", "ConvBNAct", "DBlock", "DilatedConv", "GlobalPoolBranch", "Gonv", "MFACB",
           "MSAF", "SE", "SPASPP", "Shortcut", "basic_stage", "projection", "resize_to"]
