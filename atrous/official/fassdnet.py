"""Official FASSD-Net (github.com/GibranBenitez/FASSD-Net, ptsemseg/models/FASSDNet*.py, commit
d762458) -> atrous key layout. One map serves FASSD-Net, -L1 and -L2 (same names, L2's decoder
blocks are single ``conv``/``norm`` layers).

The official encoder is one flat list ``base``: 0-3 stem convs, then per stage ``[AvgPool]``,
HarDBlock, 1x1 ConvLayer (indices 4/5, 7/8, 10/11, 13/14; pools at 6, 9, 12 have no weights).
Conv layers name their BatchNorm ``norm``; MDA's BN-PReLU pairs are ``bn_relu_*`` / ``bn_prelu``.
"""
from . import KeyMap

_ENCODER = {4: "0.block", 5: "0.transition", 7: "1.block", 8: "1.transition",
            10: "2.block", 11: "2.transition", 13: "3.block", 14: "3.transition"}

RULES = [
    (r"^base\.([0-3])\.", r"stem.\1."),
    (r"^base\.(\d+)\.", lambda m: f"encoder.{_ENCODER[int(m[1])]}." if int(m[1]) in _ENCODER else m[0]),
    (r"\.norm\.", ".bn."),
    # DAPF: 1x1 branch, asymmetric branches pyBranch2-4, fusion conv1/bn1
    (r"^DAPF\.conv1x1\.", "dapf.project.conv."),
    (r"^DAPF\.bn1x1\.", "dapf.project.bn."),
    (r"^DAPF\.pyBranch(\d)\.atrous_conv(3x1|1x3)\.", lambda m: f"dapf.branches.{int(m[1]) - 2}.conv{m[2]}.conv."),
    (r"^DAPF\.pyBranch(\d)\.bn(3x1|1x3)\.", lambda m: f"dapf.branches.{int(m[1]) - 2}.conv{m[2]}.bn."),
    (r"^DAPF\.conv1\.", "dapf.fuse.conv."),
    (r"^DAPF\.bn1\.", "dapf.fuse.bn."),
    # decoder stage i: conv1x1_up.i -> mda.i -> denseBlocksUp.i
    (r"^conv1x1_up\.(\d)\.", r"decoder.\1.fuse."),
    (r"^denseBlocksUp\.(\d)\.", r"decoder.\1.block."),
    (r"^mda\.(\d)\.bn_relu_1\.", r"decoder.\1.mda.pre."),
    (r"^mda\.(\d)\.bn_relu_2\.", r"decoder.\1.mda.post."),
    (r"^mda\.(\d)\.conv3x3\.", r"decoder.\1.mda.reduce."),
    (r"^mda\.(\d)\.parallel_conv3x3\.", r"decoder.\1.mda.detail."),
    (r"^mda\.(\d)\.parallel_ddconv(3x1|1x3)\.", r"decoder.\1.mda.context.conv\2."),
    (r"^mda\.(\d)\.conv1x1\.conv\.", r"decoder.\1.mda.expand."),
    (r"\.bn_prelu\.", "."),
    (r"\.acti\.", ".act."),
    (r"^finalConv\.", "classifier."),
]


KEYMAP = KeyMap("fassdnet", "github.com/GibranBenitez/FASSD-Net", tuple(RULES), imagenet_prefix="base.")
