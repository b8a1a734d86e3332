"""Bench report: roofline floor per row, int8 speed-up over fp32 (paired, with its interval),
the conditions each row ran under, the flip audit, a target's verdict, and report.json /
report.md / latency_vs_accuracy.png (the terminal's table is table.py's)."""
from ..core import documents
from ..core.files import atomic_write
from .audit import conditions_lines, flip_lines
from .stats import paired_speedup
from .table import COLUMNS, cells, notes
from .verdict import verdict_text


def add_floor(row: dict, peak: dict | None, target=None) -> None:
    """floor_ms: the model's MACs at this machine's measured GEMM peak (int8 peak for int8
    builds where measured); x_floor: how many times slower than that the build runs. Rows from
    an emulated CPU get the real target's predicted floor from its published peak instead."""
    macs, lat = row.get("macs"), row.get("latency_ms") or {}
    if row.get("emulated"):
        published = target and (target.peak_int8_gops if row.get("precision") == "int8"
                                else target.peak_fp32_gflops)
        row.update(floor_ms=None, x_floor=None)
        if macs and published:
            row.update(predicted_floor_ms=2 * macs / (published * 1e9) * 1000,
                       floor_peak=f"published peak of {target.name}: {published:g} G"
                                  f"{'OP' if row.get('precision') == 'int8' else 'FLOP'}/s")
        return
    if not macs or not peak or "p50" not in lat:
        row.update(floor_ms=None, x_floor=None)
        return
    int8 = row.get("precision") == "int8" and peak.get("int8_gops")
    ops_per_s = (peak["int8_gops"] if int8 else peak["fp32_gflops"]) * 1e9
    row["floor_ms"] = 2 * macs * row.get("batch", 1) / ops_per_s * 1000
    row["floor_peak"] = "int8 GEMM" if int8 else "fp32 GEMM"
    row["x_floor"] = lat["p50"] / row["floor_ms"]


def add_speedups(results: list) -> None:
    """int8_speedup: the fp32 row's p50 over the int8 row's, same runtime (> 1: int8 faster),
    and int8_speedup_paired: the same paired trial by trial, with its 95% interval."""
    ok = lambda r: r["status"] == "ok" and (r.get("latency_ms") or {}).get("p50")
    fp32 = {r["runtime"]: r for r in results if ok(r) and r.get("precision") == "fp32"
            and not r.get("variant")}
    for r in results:
        base = fp32.get(r["runtime"])
        if ok(r) and r.get("precision") == "int8" and base:
            r["int8_speedup"] = base["latency_ms"]["p50"] / r["latency_ms"]["p50"]
            r["int8_speedup_paired"] = paired_speedup(base["latency_ms"], r["latency_ms"])


def markdown(result: dict) -> str:
    lines = [f"# edgetl bench: {result['source']}", "",
             f"Recorded {result['recorded']} on `{result['machine'].get('device')}` "
             f"({result['machine'].get('processor', '')}); settings: "
             + ", ".join(f"{k} {v}" for k, v in result["settings"].items()), "",
             "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in result["results"]:
        c = cells(r)
        lines.append("| " + " | ".join(c[k].replace("|", "/") for k in COLUMNS) + " |")
    lines += ["", *notes(result), "",
              "top-1 is measured in each runtime on the bundle's evaluation set (n images, "
              "Wilson 95% interval); held-out is the export-time top-1 on the whole held-out "
              "split; agree is top-1 agreement with the PyTorch reference (quantized graph for "
              "int8), every image counted; p50 is the geometric mean over trials of each "
              "trial's median, +-% the half width of its 95% t interval across trials (trials "
              "interleaved, each a fresh process); e2e is decode + resize + normalize + infer "
              "on the bundle's original image files; int8 x is the fp32 row's p50 over the int8 "
              "row's in the same runtime, its interval paired trial by trial."]
    if any(r.get("emulated") for r in result["results"]):
        lines += ["", "Rows from an emulated CPU (qemu) measure accuracy on the device's "
                  "kernels; their latency is not measured (emulation timings mean nothing). "
                  "Their x floor column is the predicted floor on the real device: the model's "
                  "MACs at the profile's published peak."]
    if any(r.get("after_timeout") for r in result["results"]):
        lines += ["", "Rows marked after_timeout in report.json were measured after a run on "
                  "this device hit --timeout; the device bounds each run with `timeout`, but a "
                  "device without it may still have been busy."]
    if "verdict" in result:
        lines += ["", "```", verdict_text(result), "```"]
    lines += ["", *conditions_lines(result), "", *flip_lines(result), *_sustained_lines(result)]
    return "\n".join(lines) + "\n"


def _sustained_lines(result: dict) -> list:
    lines = []
    for r in result["results"]:
        if r.get("sustained"):
            w = r["sustained"]
            lines += ["", f"## Sustained: {r['build']} ({r['runtime']})", "",
                      f"{len(w)} windows over {w[-1]['t_s'] + w[1]['t_s'] if len(w) > 1 else 0:g}"
                      f" s: p50 {w[0]['p50']:.2f} ms in the first, {w[-1]['p50']:.2f} ms in the "
                      f"last ({r['sustained_drift_pct']:+.1f}%); plot: sustained.png"]
    return lines


def write(files, result: dict) -> None:
    from .plot import latency_vs_accuracy, sustained
    add_speedups(result["results"])
    files.dir.mkdir(parents=True, exist_ok=True)
    documents.write(files.report, "bench", result)
    atomic_write(files.markdown, lambda p: p.write_text(markdown(result)))
    latency_vs_accuracy(result, files.plot)
    for row in result["results"]:
        if row.get("sustained"):
            sustained(row, files.sustained_plot)
