"""Which module produced and which ops read every tensor of one forward pass.

``torch.fx`` cannot trace forwards that iterate over ``torch.split`` results or branch on shapes,
which most of our blocks do; running the model once on a small input and recording the calls
works for any Python control flow. Leaf modules (no children) are recorded as one call each; torch
functions called outside leaf modules (``cat``, ``split``, ``+``...) are recorded as well, so a
tensor's consumers are all known.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves


@dataclass
class Call:
    kind: str  # "module" or "function"
    target: object  # qualified module name, or the torch function
    inputs: list  # tensor ids, in argument order (lists flattened)
    outputs: list
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)


class Dataflow:
    """The recorded calls of ``model(example)``; ``producer[id]`` and ``users[id]`` index them."""

    def __init__(self, model: nn.Module, example: torch.Tensor):
        self.calls: list[Call] = []
        self._keep: list[torch.Tensor] = []  # keeps ids unique while recording
        names = {m: n for n, m in model.named_modules()}
        depth = [0]

        def tensors(obj):
            return [t for t in tree_leaves(obj) if isinstance(t, torch.Tensor)]

        def pre(module, args):
            depth[0] += 1

        def post(module, args, output):
            depth[0] -= 1
            ins, outs = tensors(args), tensors(output)
            self._keep += ins + outs
            self.calls.append(Call("module", names[module], [id(t) for t in ins], [id(t) for t in outs]))

        flow = self

        class Recorder(TorchFunctionMode):
            def __torch_function__(self, func, types, args=(), kwargs=None):
                kwargs = kwargs or {}
                out = func(*args, **kwargs)
                if depth[0] == 0:  # ops inside leaf modules belong to the module's call
                    ins, outs = tensors((args, kwargs)), tensors(out)
                    if ins and outs:  # .shape, .size() etc. read no data
                        flow._keep += ins + outs
                        flow.calls.append(Call("function", func, [id(t) for t in ins], [id(t) for t in outs],
                                               args, kwargs))
                return out

        leaves = [m for m in model.modules() if not list(m.children())]
        handles = [m.register_forward_pre_hook(pre) for m in leaves]
        handles += [m.register_forward_hook(post) for m in leaves]
        try:
            with torch.no_grad(), Recorder():
                output = model(example)
        finally:
            for h in handles:
                h.remove()
        self.output_ids = {id(t) for t in tensors(output)}
        self._keep += tensors(output)
        self.producer: dict[int, Call] = {}
        self.users: dict[int, list[Call]] = {}
        self.module_calls: dict[str, int] = {}
        for call in self.calls:
            for t in call.outputs:
                self.producer.setdefault(t, call)
            for t in call.inputs:
                self.users.setdefault(t, []).append(call)
            if call.kind == "module":
                self.module_calls[call.target] = self.module_calls.get(call.target, 0) + 1

    def only_user(self, tensor_id: int) -> Call | None:
        """The single op reading ``tensor_id`` (None if several, none, or it is a model output)."""
        users = self.users.get(tensor_id, [])
        if len(users) != 1 or tensor_id in self.output_ids:
            return None
        return users[0]

    def called_once(self, name: str) -> bool:
        return self.module_calls.get(name, 0) == 1
