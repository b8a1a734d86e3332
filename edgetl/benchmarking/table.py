"""The bench table: every column's text for a row (report.md has them all) and the terminal's
fixed columns that fit 100 characters. Latencies and speed-ups carry their 95% interval as
+-percent, top-1 its interval and n, and a row whose p50 never became stable is marked noisy."""
from .verdict import verdict_text

COLUMNS = ("build", "runtime", "prec", "MB", "top-1", "n", "top-1 95% CI", "held-out", "agree",
           "p50 ms", "+-%", "p90", "p99", "e2e ms", "FPS", "x floor", "int8 x",
           "int8 x 95% CI", "trials", "noisy", "thr", "version", "provider")


def _f(value, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _ci(ci, fmt: str) -> str:
    return "-" if not ci else f"[{ci[0]:{fmt}}, {ci[1]:{fmt}}]"


def cells(row: dict) -> dict:
    """Every column's text for one row."""
    lat = row.get("latency_ms") or {}
    c = {k: "" for k in COLUMNS}
    c.update(build=row["build"], runtime=str(row["runtime"]),
             prec=_f(row.get("precision"), ""),
             MB=_f(row.get("size_bytes") and row["size_bytes"] / 1e6, ".2f"))
    if row["status"] != "ok":
        c.update({"top-1": row["status"].upper(), "provider": row.get("error", "")[:60]})
        return c
    record, speed = row.get("top1_record") or {}, row.get("int8_speedup_paired") or {}
    top1 = _f(row.get("top1"), ".3f") if row.get("top1") is not None else \
        ("host" if row.get("host_top1") is not None else "-")
    c.update({"top-1": top1, "n": _f(record.get("n"), "d"),
              "top-1 95% CI": _ci(record.get("ci95"), ".3f"),
              "held-out": _f(row.get("held_out_top1"), ".3f"),
              "agree": _f(row.get("top1_agreement"), ".3f"),
              "int8 x": _f(speed.get("value"), ".2f"),
              "int8 x 95% CI": _ci(speed.get("ci95"), ".2f"),
              "thr": str(row.get("threads")), "version": str(row.get("runtime_version", "")),
              "provider": str(row.get("provider", ""))})
    if row.get("emulated"):
        c.update({"p50 ms": "emul.", "x floor": _f(row.get("predicted_floor_ms"), ".1f") + "ms"
                  if row.get("predicted_floor_ms") else "-"})
        return c
    p50 = lat.get("p50", lat.get("mean"))
    half = lat.get("half_width_pct")
    c.update({"p50 ms": _f(p50, ".2f"), "+-%": _f(half, ".1f"), "p90": _f(lat.get("p90"), ".2f"),
              "p99": _f(lat.get("p99"), ".2f"),
              "e2e ms": _f((row.get("end_to_end_ms") or {}).get("p50"), ".2f"),
              "FPS": _f(p50 and row.get("batch", 1) * 1000 / p50, ".0f"),
              "x floor": _f(row.get("x_floor"), ".1f"), "trials": _f(lat.get("trials"), "d"),
              "noisy": "NOISY" if lat.get("noisy") else ""})
    return c


TERMINAL_WIDTHS = {"build": 20, "runtime": 12, "MB": 5, "top-1": 5, "n": 4, "agree": 5,
                   "p50 ms": 7, "+-%": 4, "e2e ms": 6, "x floor": 5, "int8 x": 5,
                   "noisy": 5}
TERMINAL_HEADS = {"x floor": "xflr", "int8 x": "i8 x", "e2e ms": "e2e", "noisy": ""}


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
    text = "\n".join(rows) + "\n" + "\n".join(notes(result))
    if "verdict" in result:
        text += "\n" + verdict_text(result)
    return text


def notes(result: dict) -> list:
    """The lines under the table: the roofline's peak, how sure the numbers are."""
    lines = [peak_line(result["machine"])]
    below = [f"{r['build']} ({r['runtime']})" for r in result["results"]
             if r.get("x_floor") is not None and r["x_floor"] < 1]
    if below:
        lines.append(f"roofline: {', '.join(below)} ran faster than the floor the measured peak "
                     "gives: the peak looks read low (a busy machine), so the x floor column "
                     "understates every row")
    timed = [r for r in result["results"] if r["status"] == "ok" and r.get("latency_ms")]
    noisy = [r["build"] + f" ({r['runtime']})" for r in timed if r["latency_ms"].get("noisy")]
    if timed:
        stable = timed[0]["latency_ms"].get("stable_pct")
        lines.append(f"+-%: half width of each p50's 95% interval over its trials (target "
                     f"+-{stable:g}%)" + (f"; NOISY: {', '.join(noisy)}" if noisy else
                                         "; every row stable"))
    if result.get("trials_stopped"):
        lines.append(f"trials: {result['trials_stopped']}")
    for r in result["results"]:
        drift = (r.get("conditions_summary") or {}).get("probe_drift_pct")
        if drift is not None and drift > 10:
            lines.append(f"{r['build']} ({r['runtime']}): the CPU's speed probe moved "
                         f"{drift:.0f}% between its trials: the machine changed speed")
            break
    speed = result.get("speed_vs_previous")
    if speed:
        lines.append(f"speed probe {speed['pct']:+.0f}% against the previous report "
                     f"({speed['previous_recorded']}): " + (
                         "the machine itself ran slower or faster, so compare p50s with care"
                         if abs(speed["pct"]) > 5 else "the machine ran at the same speed"))
    if any(r.get("host_top1") is not None and r.get("top1") is None for r in result["results"]):
        lines.append("top-1 'host': not scored on the device; the host's export-time number "
                     "is in report.json as host_top1, not the device's")
    return lines


def peak_line(machine) -> str:
    peak = machine.get("peak") or {}
    if machine.get("emulated"):
        return "emulated CPU: accuracy on its kernels; latency not measured"
    if not peak:
        return "roofline: no peak measured"
    i8, looks = peak.get("int8_gops"), peak.get("looks")
    return (f"roofline floor from measured peak{f' (best of {looks} looks)' if looks else ''}: "
            f"fp32 {peak['fp32_gflops']:.0f} GFLOP/s" + (f", int8 {i8:.0f} GOP/s" if i8 else ""))
