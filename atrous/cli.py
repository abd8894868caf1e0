"""The ``atrous`` command. Each subcommand parses its arguments and calls one library function."""
from __future__ import annotations

import argparse
import sys


def parse_size(text: str) -> tuple[int, int]:
    """``"512x1024"`` -> (512, 1024); a single number means a square."""
    try:
        parts = [int(p) for p in text.lower().split("x")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"size {text!r}: expected HxW, e.g. 512x1024")
    return parts[0], parts[1]


# --------------------------------------------------------------------------- models, analysis
def cmd_models(args) -> None:
    from .analysis import complexity
    from .models import create_model, get_entry, list_models

    print(f"{'model':<14} {'params':>10} {'paper':>6} {'GMACs':>8} {'G (paper way)':>13} {'paper G':>8} "
          f"{'mIoU':>5}  at HxW, convention (paper)")
    for name in list_models(args.pattern):
        card = get_entry(name).card
        res = card.flops_resolution or args.size
        c = complexity(create_model(name), res)
        ours = f"{c['paper_flops'] / card.flops_divisor:.2f}" if "paper_flops" in c else "-"
        print(f"{name:<14} {c['params']:>10,} {_fmt(card.params_m, 'M'):>6} {c['macs'] / 1e9:>8.2f} {ours:>13} "
              f"{_fmt(card.flops_g):>8} {_fmt(card.miou):>5}  {res[0]}x{res[1]}, "
              f"{card.flops_convention or '-'} ({card.paper}, {card.reference})")


def _fmt(value, suffix="") -> str:
    return "-" if value is None else f"{value:g}{suffix}"


def cmd_complexity(args) -> None:
    from .analysis import complexity
    from .models import create_model, get_entry

    c = complexity(create_model(args.name, num_classes=args.num_classes), args.size)
    h, w = c["input_size"]
    print(f"{args.name} at {h}x{w}")
    print(f"  params        {c['params']:,}")
    print(f"  MACs          {c['macs']:,} ({c['macs'] / 1e9:.3f} G)")
    print(f"  FLOPs (2xMAC) {c['flops']:,} ({c['flops'] / 1e9:.3f} G)")
    print(f"  fvcore FLOPs  {c['fvcore_flops']:,} ({c['fvcore_flops'] / 1e9:.3f} G)")
    if "paper_convention" in c:
        divisor = get_entry(args.name).card.flops_divisor
        unit = "G" if divisor == 1e9 else "G (/2**30, as the paper's script)"
        print(f"  paper's convention ({c['paper_convention']}) {c['paper_flops']:,} "
              f"({c['paper_flops'] / divisor:.3f} {unit})")


def cmd_fov(args) -> None:
    from .analysis import field_of_view, fov_table
    from .models import create_model

    model = create_model(args.name)
    print(f"{'step':<14} {'k':>3} {'s':>3} {'dilations':<12} {'FoV before':>10} {'bound k/s':>10} "
          f"{'holds':>5} {'FoV after':>9}")
    for row in fov_table(model):
        dil = ",".join(str(r) for r in row.dilations)
        print(f"{row.name:<14} {row.kernel:>3} {row.stride:>3} {dil:<12} {row.fov_before:>10g} "
              f"{row.bound:>10.3g} {'yes' if row.holds else 'NO':>5} {row.fov_after:>9g}")
    print(f"field of view of {args.name}: {field_of_view(model)}")


def cmd_convert(args) -> None:
    from safetensors.torch import save_file

    from .official import from_official
    from .utils import atomic_path

    model = from_official(args.name, args.checkpoint)  # validates every key and shape
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    with atomic_path(args.out) as tmp:
        save_file(state, tmp, metadata={"model": args.name, "num_classes": str(model.num_classes),
                                        "source": "official"})
    print(f"wrote {args.out}: {args.name}, {model.num_classes} classes, {len(state)} tensors")


# --------------------------------------------------------------------------- training, evaluation
def cmd_train(args) -> None:
    from .engine import load_config, train

    config = load_config(args.recipe, args.set)
    summary = train(config, args.out, resume=args.resume)
    if "miou" in summary:
        print(f"wrote {summary['weights']}: {summary['iterations']} iterations, "
              f"{config['eval']['split']} mIoU {100 * summary['miou']:.2f}")


def cmd_eval(args) -> None:
    from .engine import evaluate_weights, load_config

    config = load_config(args.recipe, args.set)
    evaluate_weights(config, args.weights, args.split, args.json)


def cmd_search(args) -> None:
    import warnings

    from .search import DilationBoundWarning, run_search

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DilationBoundWarning)
        r = run_search(args.recipe, args.out, args.set, resume=args.resume)
    for w in caught:
        if issubclass(w.category, DilationBoundWarning):
            print(f"warning: {w.message}", file=sys.stderr)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    if not r:  # a non-main process of a distributed run
        return
    print(f"dilations: start {r['start']}\n           searched {r['searched']}\n           found {r['found']}")
    print(f"field of view: start {r['fov_start']:g}, searched (fractional) {r['fov_searched']:.1f}, "
          f"found (rounded) {r['fov_found']:g}")
    dilations = ",".join("[" + ",".join(str(d) for d in block) + "]" for block in r["found_dilations"])
    print(f"wrote {r['found_yaml']}: retrain with  atrous train {r['found_yaml']} --out RUN\n"
          f"  or add to another recipe:  --set model.options.dilations=[{dilations}]")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="atrous", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("models", help="list models: measured params/MACs beside the paper's figures")
    p.add_argument("pattern", nargs="?", default=None, help="shell-style filter, e.g. 'regseg*'")
    p.add_argument("--size", type=parse_size, default=(1024, 2048),
                   help="input size for models whose card names none")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("complexity", help="params, MACs and the paper's FLOP convention")
    p.add_argument("name")
    p.add_argument("--size", type=parse_size, default=(1024, 2048), help="HxW (default 1024x2048)")
    p.add_argument("--num-classes", type=int, default=None)
    p.set_defaults(func=cmd_complexity)

    p = sub.add_parser("fov", help="field of view per block and the bound r <= k/s (RegSeg Sec 3.1)")
    p.add_argument("name")
    p.set_defaults(func=cmd_fov)

    p = sub.add_parser("convert", help="official checkpoint -> atrous safetensors")
    p.add_argument("name")
    p.add_argument("checkpoint", help="the authors' .pth file")
    p.add_argument("out", help="output .safetensors path")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("train", help="train from a recipe (bundled name or YAML path)")
    p.add_argument("recipe", help="bundled recipe (toy, camvid_cpu, regseg_cityscapes, ...) or a YAML file")
    p.add_argument("--out", required=True, help="run folder: config.yaml, metrics.jsonl, checkpoints/, "
                   "model.safetensors, curves.png, prediction.png")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe key, e.g. --set train.max_iters=40 (value read as YAML)")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("search", help="dilation-rate search by gradient descent (RegSeg Sec 3.4): "
                       "train regseg_search, round, write DIR/found.yaml")
    p.add_argument("recipe", help="search recipe (bundled name, e.g. search_toy, or a YAML file)")
    p.add_argument("--out", required=True, help="run folder: what atrous train writes, plus rates.json, "
                   "rates.png, search.yaml, found.yaml, found.json")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe key, e.g. --set train.max_iters=40 or --set search.lr=0.1")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("eval", help="evaluate weights: per-class IoU, mIoU, pixel accuracy (table + JSON)")
    p.add_argument("recipe", help="the recipe the weights were trained with (dataset and model)")
    p.add_argument("--weights", required=True, help=".safetensors (or .pt) weights, e.g. DIR/model.safetensors")
    p.add_argument("--split", default=None, help="dataset split (default: the recipe's eval.split)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe key, e.g. --set eval.shorter_side=1024")
    p.add_argument("--json", default=None, help="where to write the JSON (default: beside the weights)")
    p.set_defaults(func=cmd_eval)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (KeyError, ValueError, FileNotFoundError, FileExistsError, TypeError, ArithmeticError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"atrous {args.command}: error: {msg}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
