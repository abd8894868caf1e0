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
    import hashlib

    from .weights import default_record, from_official, save_weights

    model = from_official(args.name, args.checkpoint)  # validates every key and shape
    with open(args.checkpoint, "rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    provenance = {"source": f"official checkpoint {args.checkpoint}", "weights": "official", "source_sha256": digest}
    save_weights(args.out, model, default_record(model).replace(provenance=provenance))
    print(f"wrote {args.out}: {args.name}, {model.num_classes} classes, {len(model.state_dict())} tensors")


# --------------------------------------------------------------------------- training, evaluation
def cmd_train(args) -> None:
    from .engine import load_config, train

    config = load_config(args.recipe, args.set)
    summary = train(config, args.out, resume=args.resume)
    if "miou" in summary:
        print(f"wrote {summary['weights']}: {summary['iterations']} iterations, "
              f"{config['eval']['split']} mIoU {100 * summary['miou']:.2f}")


def cmd_eval(args) -> None:
    from .deploy.source import is_model_file

    if is_model_file(args.source) and not str(args.source).endswith((".yaml", ".yml")):
        from .deploy.source import model_file
        from .engine import evaluate_file

        args.source = model_file(args.source)  # a run folder: its final weights

        if args.weights:
            raise_user(f"--weights {args.weights}: {args.source} is a weights file already; give one of them")
        evaluate_file(args.source, args.set, args.split, args.json, backend=args.backend, threads=args.threads)
        return
    from .engine import evaluate_weights, load_config

    if not args.weights:
        raise_user(f"eval {args.source}: a recipe needs --weights FILE (or give the weights file alone)")
    evaluate_weights(load_config(args.source, args.set), args.weights, args.split, args.json,
                     backend=args.backend, threads=args.threads)


def raise_user(message: str):
    from .errors import UserError

    raise UserError(message)


def cmd_search(args) -> None:
    from .search import run_search

    r = run_search(args.recipe, args.out, args.set, resume=args.resume)
    if not r:  # a non-main process of a distributed run
        return
    print(f"dilations: start {r['start']}\n           searched {r['searched']}\n           found {r['found']}")
    print(f"field of view: start {r['fov_start']:g}, searched (fractional) {r['fov_searched']:.1f}, "
          f"found (rounded) {r['fov_found']:g}")
    dilations = ",".join("[" + ",".join(str(d) for d in block) + "]" for block in r["found_dilations"])
    print(f"wrote {r['found_yaml']}: retrain with  atrous train {r['found_yaml']} --out RUN\n"
          f"  or add to another recipe:  --set model.options.dilations=[{dilations}]")


# --------------------------------------------------------------------------- deploy
def cmd_bench(args) -> None:
    from .deploy.backends import parse_backend
    from .deploy.benchmark import FP32_BACKENDS, benchmark, format_results
    from .deploy.speed_table import bench_all

    default = ",".join(FP32_BACKENDS + ("int8",)) if args.all else "eager"
    backends = [b.strip() for b in (args.backend or default).split(",") if b.strip()]
    for b in backends:
        try:
            parse_backend(b)
        except ValueError as exc:
            raise_user(f"--backend: {exc}")
    if args.shared_load < 0:
        raise_user(f"--shared-load: expected a number of busy processes >= 0, got {args.shared_load}")
    if args.all:  # CPU table: 6 backends x 2 sizes x every model, so fewer iterations by default
        print(bench_all(args.models or None, args.sizes, backends, threads=args.threads or 2,
                        warmup=3 if args.warmup is None else args.warmup,
                        iters=20 if args.iters is None else args.iters, out=args.out,
                        competing_load=args.shared_load))
        return
    if not args.model:
        raise_user("bench: give a MODEL (name or weights file) or --all")
    results = benchmark(args.model, backends, args.size, args.batch, args.device, args.amp, args.threads,
                        10 if args.warmup is None else args.warmup, 100 if args.iters is None else args.iters,
                        weights=args.weights, num_classes=args.num_classes, competing_load=args.shared_load)
    print(format_results(results))


def cmd_export(args) -> None:
    from .deploy.export import export_onnx
    from .deploy.source import open_model

    model = open_model(args.model, args.weights, args.num_classes, allow_onnx=False)
    result = export_onnx(model, args.onnx, args.size, args.batch, args.dynamic, args.opset, optimize=args.optimize)
    diffs = ", ".join(f"{k}: {v:.2e}" for k, v in result["max_abs_diff"].items())
    print(f"wrote {result['path']} ({result['bytes'] / 1e6:.1f} MB, opset {args.opset}, "
          f"{'dynamic batch/H/W' if args.dynamic else f'static {args.batch}x3x{args.size[0]}x{args.size[1]}'}); "
          f"ONNX Runtime vs PyTorch max |diff| {diffs}")


def cmd_quantize(args) -> None:
    from .deploy.quantize import quantize_model
    from .deploy.source import open_model

    model = open_model(args.model, args.weights, allow_onnx=False)
    r = quantize_model(model, args.out, args.calib, args.size, args.limit, reduce_range=args.reduce_range,
                       method=args.method)
    print(f"wrote {r['path']} ({r['bytes'] / 1e6:.1f} MB int8, {r['calibration_images']} calibration images); "
          f"vs fp32 on the first calibration image: max |logit diff| {r['max_abs_diff']:.3g}, "
          f"argmax agreement {100 * r['argmax_agreement']:.2f}%")


def cmd_predict(args) -> int:
    from .deploy.predict import load_palette, predict
    from .deploy.source import open_model

    model = open_model(args.model, args.weights)
    palette = load_palette(args.palette, model.num_classes) if args.palette else None
    r = predict(model, args.inputs, args.out, palette, args.side_by_side, args.batch,
                args.cityscapes_submission, args.device, backend=args.backend, threads=args.threads)
    print(f"wrote {r['images']} images, {r['videos']} videos ({r['frames']} frames) to {r['out']}"
          + (f"; backend {r['backend']}" if r.get("backend") else ""))
    if r["failed"]:
        print(f"failed {len(r['failed'])}:", file=sys.stderr)
        for path, reason in r["failed"]:
            print(f"  {path}: {reason}", file=sys.stderr)
        return 1
    return 0


def add_run_options(p: argparse.ArgumentParser, writes: str, set_example: str) -> None:
    """--out, --set and --resume of the commands that train (train, search)."""
    p.add_argument("--out", required=True, help=f"run folder: {writes}")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help=f"override a recipe key, e.g. {set_example}")
    p.add_argument("--resume", action="store_true",
                   help="continue from the newest checkpoint in --out (lr, max_iters and the "
                        "eval/checkpoint/log frequencies may change; docs/training.md)")


MODEL_HELP = ("a registered model name (atrous models) or a weights file: an atrous .safetensors file or "
              "checkpoint (its record rebuilds the model as trained) or the authors' .pth (with --weights)")


def add_model_arguments(p: argparse.ArgumentParser, onnx: bool = False) -> None:
    p.add_argument("model", help=MODEL_HELP + (", or an exported .onnx file" if onnx else ""))
    p.add_argument("--weights", default=None,
                   help="weights for a MODEL given by name: .safetensors (ours) or the authors' .pth; "
                        "without them the model has its initial (untrained) weights")


def add_backend_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", default=None,
                   help="run on another CPU backend: auto (the fastest on this machine that passes the accuracy "
                        "gate, measured once and cached) or a name of atrous bench (torch-bf16, openvino-bf16, "
                        "openvino-int8, int8, onnxruntime-opt, ...); default: PyTorch fp32")
    p.add_argument("--threads", type=int, default=None, help="CPU threads of the backend (default: all)")


def add_analysis_commands(sub) -> None:
    p = sub.add_parser("models", help="list models: measured params/MACs beside the paper's figures")
    p.add_argument("pattern", nargs="?", default=None, help="shell-style filter, e.g. 'regseg*'")
    p.add_argument("--size", type=parse_size, default=(1024, 2048),
                   help="input size HxW for models whose card names none (default 1024x2048)")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("complexity", help="params, MACs and the paper's FLOP convention")
    p.add_argument("name", help="registered model name (atrous models)")
    p.add_argument("--size", type=parse_size, default=(1024, 2048), help="HxW (default 1024x2048)")
    p.add_argument("--num-classes", type=int, default=None, help="class count (default: the model's)")
    p.set_defaults(func=cmd_complexity)

    p = sub.add_parser("fov", help="field of view per block and the bound r <= k/s (RegSeg Sec 3.1)")
    p.add_argument("name", help="registered model name (atrous models)")
    p.set_defaults(func=cmd_fov)

    p = sub.add_parser("convert", help="the authors' checkpoint -> atrous .safetensors with a weights record")
    p.add_argument("name", help="registered model name the checkpoint is for, e.g. regseg")
    p.add_argument("checkpoint", help="the authors' .pth file")
    p.add_argument("out", help="output .safetensors path")
    p.set_defaults(func=cmd_convert)


def add_training_commands(sub) -> None:
    p = sub.add_parser("train", help="train from a recipe (bundled name or YAML path)")
    p.add_argument("recipe", help="bundled recipe (toy, camvid_cpu, regseg_cityscapes, ...) or a YAML file")
    add_run_options(p, "config.yaml, metrics.jsonl, checkpoints/, model.safetensors, curves.png, "
                    "prediction.png", "--set train.max_iters=40 (value read as YAML)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("search", help="dilation-rate search by gradient descent (RegSeg Sec 3.4): "
                       "train regseg_search, round, write DIR/found.yaml")
    p.add_argument("recipe", help="search recipe (bundled name, e.g. search_toy, or a YAML file)")
    add_run_options(p, "what atrous train writes, plus rates.json, rates.png, search.yaml, found.yaml, "
                    "found.json", "--set train.max_iters=40 or --set search.lr=0.1")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("eval", help="evaluate weights: per-class IoU, mIoU, pixel accuracy (table + JSON)")
    p.add_argument("source", help="a weights file (.safetensors, checkpoint or .onnx): evaluated on the dataset "
                   "and split its record names; or a recipe, with --weights")
    p.add_argument("--weights", default=None, help="with a recipe: the weights to evaluate (.safetensors, .pt/.pth "
                   "or an .onnx file from atrous export/quantize, run in ONNX Runtime)")
    p.add_argument("--split", default=None, help="dataset split (default: the recipe's or record's eval split)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key, e.g. --set data.root=/data/camvid or --set eval.shorter_side=1024")
    p.add_argument("--json", default=None, help="where to write the JSON (default: beside the weights)")
    add_backend_options(p)
    p.set_defaults(func=cmd_eval)


def add_bench_command(sub) -> None:
    p = sub.add_parser("bench", help="inference speed by the papers' protocol (RegSeg Sec 4.6)")
    p.add_argument("model", nargs="?", help=MODEL_HELP + " (or --all)")
    p.add_argument("--weights", default=None, help="optional weights for a MODEL name (speed does not depend on them)")
    p.add_argument("--all", action="store_true", help="every model on CPU at --sizes -> docs/benchmarks.md")
    p.add_argument("--models", nargs="*", help="with --all: only these models")
    p.add_argument("--out", default="docs/benchmarks.md", help="with --all: markdown file to update")
    p.add_argument("--sizes", nargs="+", type=parse_size, default=[(512, 1024), (1024, 2048)],
                   help="with --all: the sizes (HxW ...; default 512x1024 1024x2048)")
    p.add_argument("--size", type=parse_size, default=(1024, 2048), help="HxW (default 1024x2048)")
    p.add_argument("--batch", type=int, default=1, help="images per forward pass (default 1)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where to run (default cpu)")
    p.add_argument("--backend", default=None,
                   help="eager|fused|compile|torch-bf16|torch-bf16-compile|onnxruntime|onnxruntime-opt|int8|"
                   "openvino|openvino-bf16|openvino-int8, or several comma-separated (timed interleaved); "
                   "+nospin (ONNX Runtime) / +nopin (OpenVINO) set session options, e.g. int8+nospin")
    p.add_argument("--amp", action="store_true", help="autocast: float16 on CUDA, bfloat16 on CPU")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (PyTorch and ONNX Runtime)")
    p.add_argument("--warmup", type=int, default=None, help="untimed iterations (protocol: 10; --all: 3)")
    p.add_argument("--iters", type=int, default=None, help="timed iterations (protocol: 100; --all: 20)")
    p.add_argument("--num-classes", type=int, default=None, help="class count of an untrained MODEL name")
    p.add_argument("--shared-load", type=int, default=0, metavar="N",
                   help="time while N busy processes run on this machine (started and stopped by the bench)")
    p.set_defaults(func=cmd_bench)


def add_deploy_commands(sub) -> None:
    add_bench_command(sub)
    p = sub.add_parser("export", help="ONNX export (with the weights record), checked against PyTorch")
    add_model_arguments(p)
    p.add_argument("--onnx", required=True, help="output .onnx path")
    p.add_argument("--size", type=parse_size, default=(1024, 2048), help="HxW traced (default 1024x2048)")
    p.add_argument("--batch", type=int, default=1, help="batch size traced (default 1)")
    p.add_argument("--dynamic", action="store_true", help="free batch, height and width")
    p.add_argument("--optimize", action="store_true",
                   help="BatchNorm folded and static-shape rewrites (faster in ONNX Runtime)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.add_argument("--num-classes", type=int, default=None, help="class count of an untrained MODEL name")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("quantize", help="post-training static int8 (ONNX Runtime) for CPU")
    add_model_arguments(p)
    p.add_argument("--calib", required=True,
                   help="calibration images: a folder or glob, NAME:ROOT[:SPLIT] (e.g. camvid:data/camvid) "
                        "or a recipe .yaml")
    p.add_argument("--out", required=True, help="output int8 .onnx path")
    p.add_argument("--size", type=parse_size, default=(1024, 2048), help="HxW (default 1024x2048)")
    p.add_argument("--limit", type=int, default=32, help="number of calibration images (default 32)")
    p.add_argument("--method", choices=("minmax", "entropy", "percentile"), default="minmax",
                   help="activation-range calibration (default minmax)")
    p.add_argument("--reduce-range", action="store_true", help="7-bit weights (avoids AVX2 saturation)")
    p.set_defaults(func=cmd_quantize)

    p = sub.add_parser("predict", help="segment images, folders and videos")
    add_model_arguments(p, onnx=True)
    p.add_argument("inputs", nargs="+", help="images, folders (searched recursively) and videos")
    p.add_argument("--out", required=True, help="output folder: new, empty, or one an earlier atrous predict "
                   "wrote; never an input folder")
    p.add_argument("--palette", default=None,
                   help="colours: cityscapes|camvid|ade20k|bdd100k or a class-list file (name or name,r,g,b per "
                        "line); default: the weights record's")
    p.add_argument("--side-by-side", action="store_true", help="image and colour mask side by side")
    p.add_argument("--batch", type=int, default=1, help="images per forward pass (equal sizes are batched)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where to run (default cpu)")
    p.add_argument("--cityscapes-submission", action="store_true",
                   help="only labelId PNGs named <city>_<seq>_<frame>_labelIds.png (test server)")
    add_backend_options(p)
    p.set_defaults(func=cmd_predict)


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="atrous", description=__doc__)
    parser.add_argument("--version", action="version", version=f"atrous {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_analysis_commands(sub)
    add_training_commands(sub)
    add_deploy_commands(sub)
    return parser


def one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as ``warning: MESSAGE`` (no source line, no file position)."""
    print(f"warning: {message}", file=file or sys.stderr)


def main(argv=None) -> int:
    """Run one command. A :class:`~atrous.errors.UserError` prints as one line (exit 2); any
    other exception is a bug and keeps its traceback."""
    import warnings

    args = build_parser().parse_args(argv)
    saved = warnings.showwarning
    warnings.showwarning = one_line_warning
    try:
        code = args.func(args)
    except Exception as exc:
        from .errors import UserError

        if not isinstance(exc, UserError):
            raise
        print(f"atrous {args.command}: error: {exc}", file=sys.stderr)
        return 2
    finally:
        warnings.showwarning = saved
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
