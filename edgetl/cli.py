"""Command line: parse arguments, call the library, print a summary. No logic of its own."""
import argparse
import sys
from dataclasses import fields

from .config import TrainConfig
from .errors import EdgetlError
from .progress import render as _render


def _add_train_options(p):
    """One --option per TrainConfig field (defaults stay None so a --config file can set them)."""
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.type in (bool, "bool"):
            p.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None)
        else:
            kind = {"int": int, "float": float, "str": str}.get(f.type, f.type)
            p.add_argument(flag, dest=f.name, type=kind, default=None,
                           help=f"default: {f.default}")
    p.add_argument("--config", help="TOML file of settings ([train] table); options override it")
    p.add_argument("--overwrite", action="store_true", help="replace an existing RUN/train")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgetl", description="Transfer learning to the edge: "
                                     "fine-tune, quantize, export and benchmark.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="fine-tune a pretrained model on an image folder")
    p.add_argument("data", help="folder with train/ validation/ [test/] or class folders")
    p.add_argument("--out", required=True, help="run folder (outputs go to RUN/train/)")
    _add_train_options(p)
    p = sub.add_parser("export", help="quantize once and build ONNX, TFLite and TensorRT bundles")
    p.add_argument("run", help="run folder holding train/")
    p.add_argument("--formats", default="onnx,tflite,tensorrt")
    p.add_argument("--precision", dest="precisions", default="fp32,fp16,int8")
    p.add_argument("--quant", default="qat", choices=("qat", "ptq"))
    p.add_argument("--qat-epochs", type=float, default=0.3)
    p.add_argument("--calib-size", type=int, default=None,
                   help="calibration images (default: 256, or the whole training split if "
                        "smaller); sets the int8 scales for PTQ and QAT alike")
    p.add_argument("--observer", default="minmax", help="PTQ observer: minmax or histogram")
    p.add_argument("--weight-range", default="reduced", choices=("reduced", "full"),
                   help="int8 weight range: reduced [-63,63] avoids AVX2 saturation in "
                        "onnxruntime; full [-127,127] for ARM/TensorRT-only deployments")
    p.add_argument("--bundle-size", type=int, default=100, help="images in each bundle's eval set")
    p.add_argument("--overwrite", action="store_true", help="replace an existing RUN/export")
    p = sub.add_parser("bench", help="latency and accuracy of every build, here or on a device")
    p.add_argument("path", help="run folder (benchmarks RUN/export/*) or one bundle folder")
    _add_bench_options(p)
    p = sub.add_parser("run", help="the main job: fine-tune -> QAT -> export -> bench")
    p.add_argument("data", help="folder with train/ validation/ [test/] or class folders")
    p.add_argument("--target", required=True, help="profile: targets/NAME.toml or NAME")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--model", default=None, help="default: efficientnet_lite0")
    p.add_argument("--img-size", type=int, default=None, help="default: the profile's img_size")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--quant", default="qat", choices=("qat", "ptq"))
    p.add_argument("--device", default=None, help="overrides the profile's device")
    p.add_argument("--overwrite", action="store_true", help="redo every stage")
    p = sub.add_parser("demo", help="the whole pipeline on the embedded digits dataset")
    p.add_argument("--out", default="runs/demo", help="run folder (default: runs/demo)")
    p.add_argument("--target", default="x86-cpu", help="profile to benchmark against")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run")
    return parser


def _add_bench_options(p):
    p.add_argument("--target", help="profile (targets/NAME.toml or NAME): builds, runtimes, "
                   "threads, device and budgets; ends with a pass/fail verdict")
    p.add_argument("--runtimes", help="onnxruntime,litert,tflite-runtime,tensorrt,torch "
                   "(default: every one installed)")
    p.add_argument("--threads", type=int, help="default: the profile's, else all cores")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--iters", type=int, default=100, help="timed runs per trial (at least)")
    p.add_argument("--min-seconds", type=float, default=0.0, help="...and at least this long")
    p.add_argument("--trials", type=int, default=3)
    p.add_argument("--device", help="local | ssh://user@host[:port] | adb[:serial]")
    p.add_argument("--python", help="Python that runs the bundle runner (default: this one "
                   "locally, python3 on an SSH device)")
    p.add_argument("--ssh-config", help="ssh config file (identity, port, known_hosts)")
    p.add_argument("--adb-binary", help="benchmark_model's path on an adb device (default: "
                   "/data/local/tmp/benchmark_model)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per build")
    p.add_argument("--out", help="default: RUN/bench")


def _train_summary(m: dict) -> str:
    from rich.table import Table
    table = Table(title=f"{m['model']} @ {m['img_size']} px, {m['strategy']}")
    for col in ("split", "images", "top-1"):
        table.add_column(col)
    for split in ("val", "test"):
        top1 = m[split]["top1"]
        table.add_row(split, str(m[split]["n"]), "-" if top1 is None else f"{top1:.4f}")
    extra = f"best epoch {m['best_epoch']}/{m['epochs_run']}, {m['wall_seconds']:.0f} s"
    if m["skipped_images"]["count"]:
        extra += f", {m['skipped_images']['count']} unreadable image(s) skipped"
    return _render(table) + extra


def _export_summary(manifest: dict) -> str:
    from rich.table import Table
    table = Table(title=f"builds ({manifest['eval_split']} split, n={manifest['n']})")
    for col in ("build", "size MB", "top-1", "agreement", "reference", "runtime"):
        table.add_column(col)
    for a in manifest["artifacts"]:
        p = a["parity"]
        agree = "-" if "top1_agreement" not in p else f"{p['top1_agreement']:.4f}"
        table.add_row(a["name"], f"{a['size_bytes'] / 1e6:.2f}",
                      "-" if a["test_top1"] is None else f"{a['test_top1']:.4f}", agree,
                      p["reference"], a.get("runtime", p.get("note", "")))
    ref = ", ".join(f"{k} {v:.4f}" for k, v in manifest["reference_top1"].items())
    return _render(table) + f"PyTorch reference top-1: {ref}; {manifest['wall_seconds']:.0f} s"


def _job_exit(result: dict) -> int:
    """The main job's three stages, summarised; the exit code is the bench verdict's."""
    for stage, summary in (("train", _train_summary), ("export", _export_summary)):
        note = " (up to date: skipped)" if stage in result["skipped"] else ""
        print(f"\n{stage}{note}\n" + summary(result[stage]))
    if result.get("export_error"):
        print(f"edgetl: warning: {result['export_error']}", file=sys.stderr)
    print()
    return _bench_exit(result["bench"])


def _bench_exit(result: dict) -> int:
    """Print the bench table; exit 1 if a build failed or a target's budget was missed."""
    from .report import table
    print(table(result))
    print(f"report: {result['out']}/report.md")
    failed = [r for r in result["results"] if r["status"] == "failed"]
    if failed:
        print(f"edgetl: {len(failed)} build(s) failed: " + "; ".join(
            f"{r['build']} ({r['runtime']}): {r['error']}" for r in failed), file=sys.stderr)
    if result.get("verdict") and not result["verdict"]["passed"]:
        print(f"edgetl: target {result['target']['name']} FAILED: " + "; ".join(
            f"{c['build']}: {c['reason']}" for c in result["verdict"]["checks"]
            if not c["passed"]), file=sys.stderr)
        return 1
    return 1 if failed else 0


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv=None) -> int:
    import signal
    signal.signal(signal.SIGTERM, _interrupt)     # kill / schedulers stop a run resumably
    args = build_parser().parse_args(argv)
    opts = {k: v for k, v in vars(args).items() if k != "command"}
    try:
        if args.command == "train":
            from .trainer import train
            metrics = train(opts.pop("data"), opts.pop("out"), **opts)
        elif args.command == "export":
            from .exporters import export
            manifest = export(opts.pop("run"), **opts)
            print(_export_summary(manifest))
            return 0
        elif args.command == "bench":
            from .benchmark import bench
            return _bench_exit(bench(opts.pop("path"), **opts))
        elif args.command == "run":
            from .main_job import run
            return _job_exit(run(opts.pop("data"), **opts))
        else:
            from .embedded import demo
            return _job_exit(demo(args.out, target=args.target, overwrite=args.overwrite))
    except EdgetlError as e:
        print(f"edgetl: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("edgetl: interrupted; continue with --resume", file=sys.stderr)
        return 130
    print(_train_summary(metrics))
    return 0
