"""Bench report: roofline floor per row, a target's verdict, and report.json / report.md /
latency_vs_accuracy.png, plus the table printed at the end."""
from .checkpoint import write_json

COLUMNS = ("build", "runtime", "prec", "MB", "top-1", "held-out", "agree", "p50 ms", "p90",
           "p99", "FPS", "x floor", "spread %", "thr", "version", "provider")


def add_floor(row: dict, peak: dict | None) -> None:
    """floor_ms: the model's MACs at this machine's measured GEMM peak (int8 peak for int8
    builds where measured); x_floor: how many times slower than that the build runs."""
    macs, lat = row.get("macs"), row.get("latency_ms") or {}
    if not macs or not peak or "p50" not in lat:
        row.update(floor_ms=None, x_floor=None)
        return
    int8 = row.get("precision") == "int8" and peak.get("int8_gops")
    ops_per_s = (peak["int8_gops"] if int8 else peak["fp32_gflops"]) * 1e9
    row["floor_ms"] = 2 * macs * row.get("batch", 1) / ops_per_s * 1000
    row["floor_peak"] = "int8 GEMM" if int8 else "fp32 GEMM"
    row["x_floor"] = lat["p50"] / row["floor_ms"]


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
        p50, top1 = row["latency_ms"].get("p50", row["latency_ms"]["mean"]), row["top1"]
        reasons = []
        if p50 > b.latency_budget_ms:
            reasons.append(f"p50 {p50:.2f} ms > budget {b.latency_budget_ms:g} ms")
        if top1 is not None and top1 < b.min_top1:
            reasons.append(f"top-1 {top1:.4f} < min_top1 {b.min_top1:g}")
        checks.append({"build": b.build, "runtime": b.runtime, "passed": not reasons,
                       "p50_ms": p50, "top1": top1, "latency_budget_ms": b.latency_budget_ms,
                       "min_top1": b.min_top1, "reason": "; ".join(reasons) or "within budget"})
    return {"passed": all(c["passed"] for c in checks), "checks": checks}


def cells(row: dict) -> list:
    lat = row.get("latency_ms") or {}
    p50 = lat.get("p50", lat.get("mean"))
    f = lambda v, fmt: "-" if v is None else format(v, fmt)
    if row["status"] != "ok":
        return [row["build"], str(row["runtime"]), f(row.get("precision"), ""),
                f((row.get("size_bytes") or 0) / 1e6, ".2f"), row["status"].upper()] + \
            [""] * (len(COLUMNS) - 6) + [row.get("error", "")[:60]]
    return [row["build"], row["runtime"], row["precision"], f(row["size_bytes"] / 1e6, ".2f"),
            f(row.get("top1"), ".3f"), f(row.get("held_out_top1"), ".3f"),
            f(row.get("top1_agreement"), ".3f"), f(p50, ".2f"), f(lat.get("p90"), ".2f"),
            f(lat.get("p99"), ".2f"), f(p50 and row["batch"] * 1000 / p50, ".0f"),
            f(row.get("x_floor"), ".1f"), f(lat.get("trial_spread_pct"), ".1f"),
            str(row.get("threads")), str(row.get("runtime_version", "")),
            str(row.get("provider", ""))]


def table(result: dict) -> str:
    from rich.table import Table

    from .progress import render
    m = result["machine"]
    t = Table(title=f"{result['source']} on {m.get('device')}: {m.get('processor', '')}")
    for col in COLUMNS:
        t.add_column(col)
    for row in result["results"]:
        t.add_row(*cells(row))
    text = render(t, width=200) + _peak_line(m)
    if "verdict" in result:
        text += "\n" + verdict_text(result)
    return text


def _peak_line(machine) -> str:
    peak = machine.get("peak") or {}
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


def write(out, result: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "report.json", result)
    (out / "report.md").write_text(markdown(result))
    plot(result, out / "latency_vs_accuracy.png")


def markdown(result: dict) -> str:
    lines = [f"# edgetl bench: {result['source']}", "",
             f"Recorded {result['recorded']} on `{result['machine'].get('device')}` "
             f"({result['machine'].get('processor', '')}); settings: "
             + ", ".join(f"{k} {v}" for k, v in result["settings"].items()), "",
             "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in cells(r)) + " |"
              for r in result["results"]]
    lines += ["", _peak_line(result["machine"]), "",
              "top-1 is measured in each runtime on the bundle's evaluation set; held-out is the "
              "export-time top-1 on the whole held-out split; agree is top-1 agreement with the "
              "PyTorch reference (quantized graph for int8); spread is the max-min of the "
              "per-trial p50s over their median."]
    if "verdict" in result:
        lines += ["", "```", verdict_text(result), "```"]
    return "\n".join(lines) + "\n"


def plot(result: dict, path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = [r for r in result["results"] if r["status"] == "ok" and r.get("top1") is not None]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in rows:
        lat = r["latency_ms"].get("p50", r["latency_ms"]["mean"])
        ax.scatter(lat, r["top1"], s=40)
        ax.annotate(f"{r['build']} ({r['runtime']})", (lat, r["top1"]), fontsize=7,
                    xytext=(4, 3), textcoords="offset points")
    ax.set_xlabel("p50 latency (ms, batch %s)" % result["settings"]["batch"])
    ax.set_ylabel("top-1 (bundle evaluation set)")
    ax.set_title("latency vs accuracy")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)

