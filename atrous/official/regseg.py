"""Official RegSeg (github.com/RolandGao/RegSeg, model.py) -> atrous key layout.

Official blocks keep flat names (``conv1``/``bn1``, ``conv2.convs.i`` for split dilations,
``shortcut.conv``/``shortcut.bn``); ours wrap each conv-BN pair in a ConvBNAct and always name
the dilation branches.
"""
from . import KeyMap

RULES = [
    (r"^stem\.", "backbone.stem."),
    (r"^body\.stage4\.(?!\d)", "backbone.stage4.0."),  # exp48 has one 1/4 block, not a Sequential
    (r"^body\.", "backbone."),
    (r"(?<!\.se)\.conv2\.weight$", ".conv2.conv.branches.0.weight"),
    (r"\.conv2\.convs\.(\d+)\.", r".conv2.conv.branches.\1."),
    (r"(?<!\.se)\.conv([13])\.weight$", r".conv\1.conv.weight"),
    (r"\.bn([123])\.", r".conv\1.bn."),
    (r"\.shortcut\.(conv|bn)\.", r".shortcut.proj.\1."),
]


KEYMAP = KeyMap("regseg", "github.com/RolandGao/RegSeg", tuple(RULES))
