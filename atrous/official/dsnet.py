"""Official DSNet (github.com/takaniwa/DSNet, models/dsnet.py + models/model_utils.py, commit
b3c4dab) -> atrous key layout. One map serves all four variants (head64/128/256 and base).

Official modules keep flat names (``conv1``/``bn1`` pairs, ``nn.Sequential`` indices such as
``process2.0``/``process2.1``); ours wrap each conv-BN pair in a ConvBNAct and name the parts:

====================  =======================  =========================================
official              atrous                   what
====================  =======================  =========================================
conv1.{0,1,3,4}       stem.{0,1}.{conv,bn}     two 3x3 s2 conv-BN-ReLU
layer1, layer2        layer1, layer2           BasicBlocks (downsample -> shortcut)
layer1_a.0            skip                     the 1/4 skip BasicBlock
layer3, layer4        context3, context4       MFACBs (conv_list -> convs,
                                               process1 -> shortcut, process2 -> compress)
layer5.0              context5                 dilated Bottleneck
layer3_, layer4_      spatial3, spatial4       BasicBlocks
layer5_.0             spatial5                 Bottleneck
compression3..5       proj3..5                 1x1 conv-BN, context -> spatial width
aff1..3               fusion3..5               MSAF (local_att -> pixel; global_att,
                                               context1..3 -> region_gonvs.0..3)
spp                   spaspp                   SPASPP (pooling -> pool, process3 -> out)
up8                   up                       3x3 conv-BN
lastlayer             head                     main head (conv1/bn2 -> conv, conv2 ->
                                               classifier)
seghead_p, seghead_d  aux_p, aux_d             training heads (bn1 -> pre_bn)
====================  =======================  =========================================

Training checkpoints saved from the official ``FullModel`` prefix every key with ``model.``;
those keys are taken (prefix removed) and the rest (loss buffers) dropped.
"""
from . import KeyMap

_GONV = {"1": "squeeze.conv", "2": "squeeze.bn", "4": "expand.conv", "5": "expand.bn"}

RULES = [
    # stem
    (r"^conv1\.0\.", "stem.0.conv."), (r"^conv1\.1\.", "stem.0.bn."),
    (r"^conv1\.3\.", "stem.1.conv."), (r"^conv1\.4\.", "stem.1.bn."),
    # stages
    (r"^layer1_a\.0\.", "skip."),
    (r"^layer([345])_\.", r"spatial\1."), (r"^spatial5\.0\.", "spatial5."),
    (r"^layer([345])\.", r"context\1."), (r"^context5\.0\.", "context5."),
    (r"^compression([345])\.0\.", r"proj\1.conv."), (r"^compression([345])\.1\.", r"proj\1.bn."),
    # MSAF: aff1..3 follow stages 3..5; global_att is the 1x1 region, context1..3 the 4/8/16 grids
    (r"^aff1\.", "fusion3."), (r"^aff2\.", "fusion4."), (r"^aff3\.", "fusion5."),
    (r"\.local_att\.0\.", ".pixel.squeeze.conv."), (r"\.local_att\.1\.", ".pixel.squeeze.bn."),
    (r"\.local_att\.3\.", ".pixel.expand.conv."), (r"\.local_att\.4\.", ".pixel.expand.bn."),
    (r"\.global_att\.", ".context0."),
    (r"\.context(\d)\.([1245])\.", lambda m: f".region_gonvs.{m[1]}.{_GONV[m[2]]}."),
    # SPASPP and MFACB
    (r"^spp\.", "spaspp."),
    (r"\.conv_list\.", ".convs."),
    (r"\.pooling\.1\.", ".pool.conv.conv."), (r"\.pooling\.2\.", ".pool.conv.bn."),
    (r"\.process1\.0\.", ".shortcut.conv."), (r"\.process1\.1\.", ".shortcut.bn."),
    (r"\.process2\.0\.", ".compress.conv."), (r"\.process2\.1\.", ".compress.bn."),
    (r"\.process3\.0\.", ".out.conv."), (r"\.process3\.1\.", ".out.bn."),
    # head and training heads
    (r"^up8\.0\.", "up.conv."), (r"^up8\.1\.", "up.bn."),
    (r"^lastlayer\.", "head."), (r"^seghead_p\.", "aux_p."), (r"^seghead_d\.", "aux_d."),
    (r"^(head|aux_p|aux_d)\.bn1\.", r"\1.pre_bn."),
    (r"^(head|aux_p|aux_d)\.conv1\.", r"\1.conv.conv."),
    (r"^(head|aux_p|aux_d)\.bn2\.", r"\1.conv.bn."),
    (r"^(head|aux_p|aux_d)\.conv2\.", r"\1.classifier."),
    # BasicBlock / Bottleneck internals
    (r"\.conv([123])\.weight$", r".conv\1.conv.weight"),
    (r"\.bn([123])\.", r".conv\1.bn."),
    (r"\.downsample\.0\.", ".shortcut.conv."), (r"\.downsample\.1\.", ".shortcut.bn."),
]

AUX_PREFIXES = ("aux_p.", "aux_d.")


def implied_options(state) -> dict:
    """Build with the training heads (``seghead_p``/``seghead_d``) exactly when the checkpoint
    has them, so that every key loads (the official eval model, ``get_pred_model``, has none);
    the eval output is the same either way."""
    return {"aux_heads": any(k.startswith(AUX_PREFIXES) for k in state)}


KEYMAP = KeyMap("dsnet", "github.com/takaniwa/DSNet", tuple(RULES), wrapper_prefix="model.",
                implied_options=implied_options)
