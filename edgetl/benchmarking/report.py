"""Bench report: roofline floor per row, int8 speed-up over fp32, a target's verdict, and
report.json / report.md / latency_vs_accuracy.png, plus the table printed at the end (the
terminal gets the columns that fit 100 characters; report.md has them all)."""
from ..core import documents
from ..core.files import atomic_write

COLUMNS = ("build", "runtime", "prec", "MB", "top-1", "held-out", "agree", "p50 ms", "p90",
           "p99", "FPS", "x floor", "int8 x", "spread %", "thr", "version", "provider")


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
    """int8_speedup: the fp32 row's p50 over the int8 row's, same runtime (> 1: int8 faster)."""
    p50 = lambda r: (r.get("latency_ms") or {}).get("p50")
    fp32 = {(r["runtime"], r.get("variant", "")): p50(r) for r in results
            if r["status"] == "ok" and r.get("precision") == "fp32" and p50(r)}
    for r in results:
        base = fp32.get((r["runtime"], ""))
        if r["status"] == "ok" and r.get("precision") == "int8" and base and p50(r):
            r["int8_speedup"] = base / p50(r)


def verdict(results: list, target) -> dict:
    """Pass only if every build the profile names ran, within its latency budget (p50) and at
    or above its minimum top-1."""
    checks = []
    for b in target.builds:
        row = next((r for r in results if r["build"] == b.build and r["runtime"] == b.runtime),
                   None)
        if row is None or row["status"] != "ok":
            reason = row.get("error", "not measured") if row else "not measured"
            checks.append({"build": b.build, "runtime": b.runtime, "passed": False,
                           "reason": reason})
            continue
        top1, reasons = row["top1"], []
        p50 = None if row.get("emulated") else row["latency_ms"].get("p50",
                                                                      row["latency_ms"]["mean"])
        if p50 is not None and p50 > b.latency_budget_ms:
            reasons.append(f"p50 {p50:.2f} ms > budget {b.latency_budget_ms:g} ms")
        if top1 is not None and top1 < b.min_top1:
            reasons.append(f"top-1 {top1:.4f} < min_top1 {b.min_top1:g}")
        within = "within budget" if p50 is not None else \
            "accuracy within budget (latency not measured: emulated CPU)"
        if top1 is None and not reasons:
            host = row.get("host_top1")
            within = ("latency within budget; top-1 not measured on the device, so min_top1 "
                      "is not judged" + (f" (host LiteRT at export: {host:.3f})"
                                          if host is not None else ""))
        checks.append({"build": b.build, "runtime": b.runtime, "passed": not reasons,
                       "p50_ms": p50, "top1": top1, "latency_budget_ms": b.latency_budget_ms,
                       "min_top1": b.min_top1, "reason": "; ".join(reasons) or within})
    return {"passed": all(c["passed"] for c in checks), "checks": checks}


def cells(row: dict) -> dict:
    """Every column's text for one row."""
    lat = row.get("latency_ms") or {}
    p50 = lat.get("p50", lat.get("mean"))
    f = lambda v, fmt: "-" if v is None else format(v, fmt)
    c = {k: "" for k in COLUMNS}
    c.update(build=row["build"], runtime=str(row["runtime"]), prec=f(row.get("precision"), ""),
             MB=f(row.get("size_bytes") and row["size_bytes"] / 1e6, ".2f"))
    if row["status"] != "ok":
        c.update({"top-1": row["status"].upper(), "provider": row.get("error", "")[:60]})
        return c
    if row.get("emulated"):
        c.update({"p50 ms": "emul.", "x floor": f(row.get("predicted_floor_ms"), ".1f") + "ms"
                  if row.get("predicted_floor_ms") else "-"})
        lat, p50 = {}, None
    c.update({"top-1": f(row.get("top1"), ".3f"), "held-out": f(row.get("held_out_top1"), ".3f"),
              "agree": f(row.get("top1_agreement"), ".3f"),
              **({} if row.get("emulated") else {"p50 ms": f(p50, ".2f"),
                                                   "x floor": f(row.get("x_floor"), ".1f")}),
              "p90": f(lat.get("p90"), ".2f"), "p99": f(lat.get("p99"), ".2f"),
              "FPS": f(p50 and row.get("batch", 1) * 1000 / p50, ".0f"),
              "int8 x": f(row.get("int8_speedup"), ".2f"),
              "spread %": f(lat.get("trial_spread_pct"), ".1f"), "thr": str(row.get("threads")),
              "version": str(row.get("runtime_version", "")),
              "provider": str(row.get("provider", ""))})
    return c


TERMINAL_WIDTHS = {"build": 20, "runtime": 16, "MB": 6, "top-1": 5, "held-out": 5, "agree": 5,
                   "p50 ms": 7, "FPS": 6, "x floor": 5, "int8 x": 5, "spread %": 5}
TERMINAL_HEADS = {"held-out": "held", "x floor": "xflr", "int8 x": "i8 x", "spread %": "sprd%"}


def table(result: dict) -> str:
    """The terminal table: fixed columns that fit 100 characters (report.md has them all)."""
    def line(values: dict) -> str:
        out = []
        for col, w in TERMINAL_WIDTHS.items():
            v = values.get(col, "")
            v = v if len(v) <= w else v[:w - 1] + "~"
            out.append(v.ljust(w) if col in ("build", "runtime") else v.rjust(w))
        return " ".join(out).rstrip()
    m = result["machine"]
    rows = [f"{m.get('device')}: {m.get('processor', '')}",
            line({c: TERMINAL_HEADS.get(c, c) for c in TERMINAL_WIDTHS})]
    for row in result["results"]:
        c = cells(row)
        if row["status"] != "ok":
            c = {"build": c["build"], "runtime": c["runtime"], "MB": c["MB"]}
            rows.append(line(c) + f"  {row['status'].upper()}")
        else:
            rows.append(line(c))
    text = "\n".join(rows) + "\n" + _peak_line(m)
    if "verdict" in result:
        text += "\n" + verdict_text(result)
    return text


def _peak_line(machine) -> str:
    peak = machine.get("peak") or {}
    if machine.get("emulated"):
        return "emulated CPU: accuracy on its kernels; latency not measured"
    if not peak:
        return "roofline: no peak measured"
    i8 = peak.get("int8_gops")
    return (f"roofline floor from measured peak: fp32 {peak['fp32_gflops']:.0f} GFLOP/s" +
            (f", int8 {i8:.0f} GOP/s" if i8 else ""))


def verdict_text(result) -> str:
    v = result["verdict"]
    lines = [f"target {result['target']['name']}: {'PASS' if v['passed'] else 'FAIL'}"]
    lines += [f"  {'ok  ' if c['passed'] else 'FAIL'} {c['build']} ({c['runtime']}): "
              f"{c['reason']}" for c in v["checks"]]
    return "\n".join(lines)


def markdown(result: dict) -> str:
    lines = [f"# edgetl bench: {result['source']}", "",
             f"Recorded {result['recorded']} on `{result['machine'].get('device')}` "
             f"({result['machine'].get('processor', '')}); settings: "
             + ", ".join(f"{k} {v}" for k, v in result["settings"].items()), "",
             "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in result["results"]:
        c = cells(r)
        lines.append("| " + " | ".join(c[k].replace("|", "/") for k in COLUMNS) + " |")
    lines += ["", _peak_line(result["machine"]), "",
              "top-1 is measured in each runtime on the bundle's evaluation set; held-out is the "
              "export-time top-1 on the whole held-out split; agree is top-1 agreement with the "
              "PyTorch reference (quantized graph for int8); int8 x is the fp32 row's p50 over "
              "the int8 row's in the same runtime; spread is the max-min of the per-trial p50s "
              "over their median."]
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
    return "\n".join(lines) + "\n"


def write(files, result: dict) -> None:
    from .plot import latency_vs_accuracy
    add_speedups(result["results"])
    files.dir.mkdir(parents=True, exist_ok=True)
    documents.write(files.report, "bench", result)
    atomic_write(files.markdown, lambda p: p.write_text(markdown(result)))
    latency_vs_accuracy(result, files.plot)
