"""Command line: parse arguments, call the library, print a summary. No logic of its own.

Every failure ends in one line on stderr and a non-zero exit (core/exits.py: one code per kind
of failure): a user mistake names the file or value and the fix; an unexpected error names the
log file that holds its traceback."""
import argparse
import os
import sys

from .core import exits
from .core.errors import EdgetlError, ParityError
from .core.options import add_flags, split_layers
from .summaries import (bench_exit, emulator_usage, export_summary, report_summary,
                        train_summary)

INTERRUPTED = {"train": "interrupted; continue with --resume",
               "run": "interrupted; run the same command again to continue",
               "demo": "interrupted; run the same command again to continue",
               "export": "interrupted; the previous export (if any) is unchanged",
               "bench": "interrupted; the previous report (if any) is unchanged",
               "device": "interrupted; run the same command again to finish the device"}


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (value, problem, where to read more)."""

    def error(self, message):
        self.exit(exits.BAD_INPUT, f"edgetl: error: {message} (see '{self.prog} --help')\n")


def _add_train_options(p, rename=None):
    """One --flag per TrainConfig field, help and default from the field (parsed defaults stay
    None, so a --config file or a profile can set them)."""
    from .training.config import TrainConfig
    add_flags(p, TrainConfig, rename)


def _add_export_options(p):
    from .exporting.options import ExportOptions
    add_flags(p, ExportOptions)


def _add_bench_options(p, skip=()):
    from .benchmarking.options import BenchOptions
    add_flags(p, BenchOptions, skip=skip)


def build_parser() -> argparse.ArgumentParser:
    from .core import VERSION
    parser = OneLineParser(prog="edgetl", description="Transfer learning to the edge: "
                           "fine-tune, quantize, export and benchmark.")
    parser.add_argument("--version", action="version", version=f"edgetl {VERSION}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    p = sub.add_parser("train", help="fine-tune a pretrained model on an image folder")
    p.add_argument("data", help="folder with train/ validation/ [test/] or class folders")
    p.add_argument("--out", required=True, help="run folder (outputs go to RUN/train/)")
    _add_train_options(p)
    p.add_argument("--config", help="TOML file of settings ([train] table); options override it")
    p.add_argument("--overwrite", action="store_true", help="replace an existing RUN/train")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run")
    p = sub.add_parser("export", help="quantize once and build ONNX, TFLite and TensorRT bundles")
    p.add_argument("run", help="run folder holding train/")
    _add_export_options(p)
    p.add_argument("--report-only", action="store_true",
                   help="rewrite the quantization report of an existing export, nothing else")
    p.add_argument("--overwrite", action="store_true", help="replace an existing RUN/export")
    p = sub.add_parser("bench", help="latency and accuracy of every build, here or on a device")
    p.add_argument("path", help="run folder (benchmarks RUN/export/*) or one bundle folder")
    _add_bench_options(p)
    p = sub.add_parser("run", help="the main job: fine-tune -> QAT -> export -> bench; takes "
                       "every train, export and bench option")
    p.add_argument("data", help="folder with train/ validation/ [test/] or class folders")
    p.add_argument("--target", required=True, help="profile: targets/NAME.toml or NAME")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--config", help="TOML file with [train], [export] and [bench] tables; "
                   "above the profile, below the options")
    p.add_argument("--overwrite", action="store_true", help="redo every stage")
    _add_train_options(p, rename=RUN_RENAMES)
    _add_export_options(p)
    _add_bench_options(p, skip=("target", "out"))
    p = sub.add_parser("device", help="devices edgetl provides itself")
    dev = p.add_subparsers(dest="action", required=True, parser_class=OneLineParser)
    e = dev.add_parser("emulate", help="build (once) an emulated ARM device: a Debian 12 arm64 "
                       "userland with Python and runtimes, run by qemu")
    e.add_argument("arch", choices=("arm64",))
    e.add_argument("--dir", help="where (default: $EDGETL_EMULATED_DIR or "
                   "~/.cache/edgetl/emulated-arm64)")
    e.add_argument("--runtimes", default="tflite-runtime,onnxruntime",
                   help="tflite-runtime, litert, onnxruntime (default: tflite-runtime,onnxruntime)")
    c = dev.add_parser("check", help="what a device lacks for a target's builds (Python, "
                       "numpy, runtimes, timeout, GPU), in seconds, before a long run")
    c.add_argument("device", nargs="?", help="local | ssh://user@host[:port] | adb[:serial] | "
                   "emulated:arm64 (default: the target's device, else local)")
    c.add_argument("--target", help="profile whose builds' runtimes the device needs "
                   "(default: any one runtime will do)")
    c.add_argument("--python", help="the device's Python (default: the profile's, else python3)")
    c.add_argument("--ssh-config", help="ssh config file (default: ssh's own)")
    c.add_argument("--timeout", type=float, default=60.0, help="seconds the device may take "
                   "to answer (default: 60)")
    sub.add_parser("targets", help="the shipped target profiles: device, builds, budgets")
    p = sub.add_parser("predict", help="classify photos with one build, in its own runtime, "
                       "through the bundle's own image path")
    p.add_argument("path", help="run folder (its RUN/export builds) or one bundle folder")
    p.add_argument("images", nargs="+", help="image files and folders (read as training reads "
                   "them; a folder named after a class gives its images' label)")
    p.add_argument("--build", help="which build of a run (default: the first of "
                   "tflite-int8, onnx-int8, executorch-int8, tflite-fp32, onnx-fp32 it has)")
    p.add_argument("--top-k", type=int, default=3, help="classes shown per image (default: 3)")
    p.add_argument("--runtime", help="runtime of the build's format (default: the bundle's)")
    p.add_argument("--threads", type=int, help="runtime threads (default: the runtime's)")
    p.add_argument("--json", help="also write every prediction to this file")
    p = sub.add_parser("compare", help="two bench reports, build by build: latency ratio and "
                       "top-1 difference with intervals, and a verdict")
    p.add_argument("a", help="report A: report.json, a bench folder or a run folder")
    p.add_argument("b", help="report B (its latency over A's)")
    p.add_argument("--build-a", help="compare this build of A ... (default: every build and "
                   "runtime both reports hold)")
    p.add_argument("--build-b", help="... with this build of B (default: --build-a)")
    p.add_argument("--json", help="also write the comparison to this file")
    p = sub.add_parser("demo", help="the whole pipeline on the embedded digits dataset")
    p.add_argument("--out", default="runs/demo", help="run folder (default: runs/demo)")
    p.add_argument("--target", default="x86-cpu", help="profile to benchmark against")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run")
    return parser


RUN_RENAMES = {"threads": "train_threads"}   # `edgetl run`: --threads is the bench's


def _dispatch(args) -> int:
    opts = {k: v for k, v in vars(args).items() if k != "command" and v is not None}
    if args.command == "train":
        from .training.trainer import train
        print(train_summary(train(opts.pop("data"), opts.pop("out"), **opts)))
        return 0
    if args.command == "export":
        from .exporting.exporter import export, report_only
        if opts.pop("report_only"):
            print(report_summary(report_only(opts.pop("run"))))
            return 0
        print(export_summary(export(opts.pop("run"), **opts)))
        return 0
    if args.command == "bench":
        from .benchmarking.session import benchmark
        return bench_exit(benchmark(opts.pop("path"), **opts))
    if args.command == "targets":
        from .summaries import targets_summary
        print(targets_summary())
        return 0
    if args.command in ("predict", "compare"):
        return _inspect(args)
    if args.command == "device" and args.action == "check":
        from .benchmarking.check import check_text, device_check
        result = device_check(args.device, args.target, args.python, args.ssh_config,
                              args.timeout)
        print(check_text(result))
        return exits.OK if result["ready"] else exits.BAD_INPUT
    if args.command == "device":
        from .benchmarking.emulated import build
        runtimes = [r.strip() for r in args.runtimes.split(",") if r.strip()]
        print(emulator_usage(build(args.dir, runtimes, args.arch), args.arch, args.dir))
        return 0
    from .pipeline import demo, run
    if args.command == "demo":
        return _job_exit(demo(args.out, target=args.target, overwrite=args.overwrite))
    fixed = {k: opts.pop(k) for k in ("data", "target", "out", "config", "overwrite")
             if k in opts}
    return _job_exit(run(fixed.pop("data"), fixed.pop("target"), fixed.pop("out"), **fixed,
                         **_run_layers(opts)))


def _inspect(args) -> int:
    """predict and compare: a table, the JSON on request; compare's code says if B regressed."""
    if args.command == "predict":
        from .inspecting.predict import predict, predict_table
        result = predict(args.path, args.images, args.build, args.top_k, args.runtime,
                         args.threads)
        print(predict_table(result))
    else:
        from .inspecting.compare import compare, compare_table
        result = compare(args.a, args.b, args.build_a, args.build_b)
        print(compare_table(result))
    if args.json:
        from .core.files import write_json
        write_json(args.json, result)
        print(f"written: {args.json}")
    return exits.VERDICT_FAILED if result.get("regressed") else exits.OK


def _run_layers(opts: dict) -> dict:
    """`edgetl run`'s options sorted into the stage each belongs to (--threads is the bench's,
    --train-threads training's)."""
    from .benchmarking.options import BenchOptions
    from .exporting.options import ExportOptions
    from .training.config import TrainConfig
    bench_threads, train_threads = opts.pop("threads", None), opts.pop("train_threads", None)
    train, export, bench = split_layers(opts, TrainConfig, ExportOptions, BenchOptions)
    train.update({"threads": train_threads} if train_threads is not None else {})
    bench.update({"threads": bench_threads} if bench_threads is not None else {})
    return {"train_options": train, "export_options": export, "bench_options": bench}


def _job_exit(result: dict) -> int:
    """The main job's three stages, summarised; the exit code is the bench verdict's."""
    for stage, summary in (("train", train_summary), ("export", export_summary)):
        note = " (up to date: skipped)" if stage in result["skipped"] else ""
        print(f"\n{stage}{note}\n" + summary(result[stage]))
    if result.get("export_error"):
        print(f"edgetl: warning: {result['export_error']}", file=sys.stderr)
    print()
    return bench_exit(result["bench"])          # the export's gates are part of its verdict


def _interrupt(signum, frame):
    from .core.console import stop_requested
    stop_requested.set()                     # the next progress step raises again if this is lost
    raise KeyboardInterrupt


def _crash_log(exc) -> str:
    """The traceback of an unexpected error, in a file; returns its path."""
    import tempfile
    import time
    import traceback
    from pathlib import Path
    folder = Path.home() / ".cache" / "edgetl" / "logs"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        folder = Path(tempfile.gettempdir())
    fd, path = tempfile.mkstemp(prefix=f"crash-{time.strftime('%Y%m%d-%H%M%S')}-",
                                suffix=".log", dir=folder)     # never two crashes in one file
    with os.fdopen(fd, "w") as f:
        f.write("".join(traceback.format_exception(exc)))
    return path


def main(argv=None) -> int:
    import signal
    signal.signal(signal.SIGTERM, _interrupt)     # kill / schedulers stop a run like Ctrl-C
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)      # a closed terminal stops it the same way
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except ParityError as e:
        print(f"edgetl: error: {e}", file=sys.stderr)
        return exits.INT8_OR_PARITY
    except EdgetlError as e:
        print(f"edgetl: error: {e}", file=sys.stderr)
        return exits.BAD_INPUT
    except KeyboardInterrupt:
        print(f"edgetl: {INTERRUPTED[args.command]}", file=sys.stderr)
        return exits.INTERRUPTED
    except OSError as e:                         # the environment: a read-only or full disk
        where = f" {e.filename}" if e.filename else ""
        print(f"edgetl: error: cannot write or read{where}: {e.strerror or e}; check the "
              "folder's permissions and free space, or choose another --out", file=sys.stderr)
        return exits.BAD_INPUT
    except Exception as e:                       # a bug: one line + the log of its traceback
        where = _crash_log(e)
        message = " ".join(str(e).split())[:200]
        print(f"edgetl: unexpected error: {e.__class__.__name__}: {message} (traceback in "
              f"{where}; please report it)", file=sys.stderr)
        return exits.INTERNAL
