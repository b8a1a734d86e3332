"""Issue: int8 that pays off on every runtime. For each onnx/tflite fp32/int8 build of a run:
p50 latency at batch 1 (interleaved trials, one process each, through the bundle runner as
`edgetl bench` measures it), and for onnxruntime where the time goes: its profiler's time per
node type and the operators of the graph it actually runs (its optimized model). The same
builds are also measured in the graph form edgetl shipped before (`--before RUN`, an export made
by the earlier code on the same checkpoint), so one run shows before and after on this CPU.

  python benchmarks/int8_speed.py --run runs/bench-clothing-run [--before runs/before]
"""
import argparse
import collections
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import save  # noqa: E402

from edgetl import bundle_runner  # noqa: E402
from edgetl.benchmarking import session  # noqa: E402


def ort_breakdown(bundle: Path, threads: int, runs: int = 200) -> dict:
    """onnxruntime's own view: ms per inference by node type, and the optimized graph's ops."""
    import onnxruntime as ort
    manifest = json.loads((bundle / "manifest.json").read_text())
    images = np.load(bundle / "eval.npz")["images"][:1]
    x = bundle_runner.to_input(images, manifest)
    with tempfile.TemporaryDirectory() as tmp:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.enable_profiling = True
        opts.profile_file_prefix = str(Path(tmp) / "prof")
        opts.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        options = manifest.get("runtime_options", {}).get("onnxruntime", {})
        for k, v in bundle_runner.options_here(options).items():
            opts.add_session_config_entry(k, v)
        sess = ort.InferenceSession(str(bundle / manifest["model_file"]), opts,
                                    providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        for _ in range(runs):
            sess.run(None, {name: x})
        events = json.loads(Path(sess.end_profiling()).read_text())
        import onnx
        ops = collections.Counter(n.op_type for n in onnx.load(opts.optimized_model_filepath)
                                  .graph.node)
    per_type = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            per_type[e["args"]["op_name"]] += e["dur"]
    total = sum(per_type.values())
    return {"ms_per_inference_by_op": {k: round(v / runs / 1000, 4)
                                       for k, v in per_type.most_common()},
            "node_ms_per_inference": round(total / runs / 1000, 4),
            "optimized_graph_ops": dict(ops.most_common())}


def latencies(run: Path, threads: int, trials: int, iters: int) -> dict:
    result = session.benchmark(run, runtimes="onnxruntime,litert", threads=threads, trials=trials,
                               iters=iters, warmup=20, out=run / "int8-speed-bench")
    return {f"{r['build']} ({r['runtime']})": {
        "p50_ms": r["latency_ms"]["p50"], "trial_p50": r["latency_ms"].get("trial_p50"),
        "size_bytes": r["size_bytes"], "top1": r["top1"], "agreement": r["top1_agreement"]}
        for r in result["results"] if r["status"] == "ok" and r["runtime"] != "torch"}


def ratios(rows: dict) -> dict:
    out = {}
    for rt in ("onnxruntime", "litert"):
        fmt = "onnx" if rt == "onnxruntime" else "tflite"
        a, b = rows.get(f"{fmt}-int8 ({rt})"), rows.get(f"{fmt}-fp32 ({rt})")
        if a and b:
            out[rt] = {"int8_over_fp32_p50": round(a["p50_ms"] / b["p50_ms"], 3),
                       "int8_file_over_fp32_file": round(a["size_bytes"] / b["size_bytes"], 3)}
    return out


def measure(run: Path, threads: int, trials: int, iters: int) -> dict:
    rows = latencies(run, threads, trials, iters)
    return {"rows": rows, "ratios": ratios(rows),
            "onnxruntime_breakdown": {b: ort_breakdown(run / "export" / b, threads)
                                      for b in ("onnx-fp32", "onnx-int8")
                                      if (run / "export" / b).is_dir()}}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", required=True)
    ap.add_argument("--before", help="the same checkpoint exported by the earlier code")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--result", default="int8_speed")
    args = ap.parse_args()
    result = {"threads": args.threads, "batch": 1,
              "after": measure(Path(args.run), args.threads, args.trials, args.iters)}
    if args.before:
        result["before"] = measure(Path(args.before), args.threads, args.trials, args.iters)
    save(args.result, result)
    for when in ("before", "after"):
        if when in result:
            print(when, json.dumps(result[when]["ratios"]))


if __name__ == "__main__":
    main()
