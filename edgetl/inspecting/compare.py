"""`edgetl compare A B`: two bench reports (report.json, a bench folder or a run folder), row by
row (build and runtime; or the two rows named by --build-a/--build-b): B's p50 latency over
A's with its interval (Welch's t on the logs of the per-trial p50s), top-1 difference with
its interval (Newcombe's, from the two Wilson intervals), and a plain verdict. The intervals
of all the rows compared hold together with 95% confidence (Bonferroni: each row's at
1 - 0.05/rows), so two benches of the same builds call some row faster or slower by chance
about one time in twenty at most, however many rows they share, as far as each row's t interval
holds (at 95% a row, six rows gave one such call about one time in four). Different machines,
settings or sources are said before any number."""
import json
import math
from pathlib import Path

from ..core.errors import RunError
from ..core.intervals import top1

# what must match for two latencies to be comparable, and where it is in a report
SAME = {"machine": ("machine", ("hostname", "processor", "cpu_flags", "machine", "device")),
        "settings": ("settings", ("threads", "batch", "warmup", "iters", "device"))}
VERDICTS = ("faster", "slower", "no detectable change")
FAMILY_ALPHA = 0.05       # the chance that any compared row's interval misses, all rows together


def read_report(path) -> dict:
    path = Path(path)
    for candidate in (path, path / "report.json", path / "bench" / "report.json"):
        if candidate.is_file():
            try:
                report = json.loads(candidate.read_text())
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
                raise RunError(f"{candidate}: not a readable bench report ({e})") from None
            if not isinstance(report, dict) or "results" not in report:
                raise RunError(f"{candidate}: not a bench report (no results): pass "
                               "RUN/bench/report.json, a bench folder or a run folder")
            report["_path"] = str(candidate)
            return report
    raise RunError(f"{path}: no bench report there (report.json, bench/report.json): run "
                   "edgetl bench first")


def compare(a, b, build_a=None, build_b=None) -> dict:
    ra, rb = read_report(a), read_report(b)
    pairs = _pairs(ra, rb, build_a, build_b)
    alpha = FAMILY_ALPHA / len(pairs)
    rows = [_compare_rows(x, y, alpha) for x, y in pairs]
    return {"a": ra["_path"], "b": rb["_path"], "warnings": _warnings(ra, rb), "rows": rows,
            "intervals": {"together": 1 - FAMILY_ALPHA, "rows": len(pairs),
                          "each_row": 1 - alpha},
            "regressed": any(r["latency"]["verdict"] == "slower" or r["top1"]["verdict"] ==
                             "lower" for r in rows)}


def _ok(report) -> dict:
    return {(r["build"], r["runtime"]): r for r in report["results"] if r["status"] == "ok"}


def _pairs(ra, rb, build_a, build_b) -> list:
    a, b = _ok(ra), _ok(rb)
    if build_a or build_b:
        pick = lambda rows, name, where: [r for (bld, _), r in rows.items() if bld == name] or \
            _none(name, where, rows)
        x, y = pick(a, build_a or build_b, ra), pick(b, build_b or build_a, rb)
        return [(x[0], y[0])]
    common = [k for k in a if k in b]
    if not common:
        raise RunError(f"{ra['_path']} and {rb['_path']} share no build and runtime: name the "
                       "two rows with --build-a NAME --build-b NAME")
    return [(a[k], b[k]) for k in common]


def _none(name, report, rows):
    raise RunError(f"{report['_path']} has no measured build {name}: choose one of "
                   f"{', '.join(sorted({b for b, _ in rows}))}")


def _compare_rows(x, y, alpha: float) -> dict:
    return {"a": f"{x['build']} ({x['runtime']})", "b": f"{y['build']} ({y['runtime']})",
            "latency": latency_ratio(x["latency_ms"], y["latency_ms"], alpha),
            "top1": top1_difference(x.get("top1_record"), y.get("top1_record"), alpha),
            "changed_predictions": _changed(x.get("predictions"), y.get("predictions"))}


def latency_ratio(la: dict, lb: dict, alpha: float = FAMILY_ALPHA) -> dict:
    """B's p50 over A's: the ratio of geometric means of the per-trial p50s, with Welch's
    1 - alpha interval on the log scale; 'faster'/'slower' only when it excludes 1."""
    from scipy import stats
    xa, xb = ([math.log(v) for v in lat.get("trial_p50") or [lat["p50"]]] for lat in (la, lb))
    ratio = math.exp(_mean(xb) - _mean(xa))
    if len(xa) < 2 or len(xb) < 2:
        return {"ratio": ratio, "ci95": None, "trials": [len(xa), len(xb)],
                "verdict": "no detectable change", "why": "fewer than 2 trials on a side"}
    va, vb = _var(xa) / len(xa), _var(xb) / len(xb)
    denominator = va ** 2 / (len(xa) - 1) + vb ** 2 / (len(xb) - 1)
    df = (va + vb) ** 2 / denominator if denominator else 1.0
    half = stats.t.ppf(1 - alpha / 2, max(1.0, df)) * math.sqrt(va + vb)
    lo, hi = ratio * math.exp(-half), ratio * math.exp(half)
    verdict = "faster" if hi < 1 else "slower" if lo > 1 else "no detectable change"
    return {"ratio": ratio, "ci95": [lo, hi], "trials": [len(xa), len(xb)], "verdict": verdict}


def top1_difference(ra, rb, alpha: float = FAMILY_ALPHA) -> dict:
    """B's top-1 minus A's with Newcombe's 1 - alpha interval; 'higher'/'lower' when it
    excludes 0."""
    from scipy import stats
    if not ra or not rb or ra.get("top1") is None or rb.get("top1") is None:
        return {"difference": None, "ci95": None, "verdict": "not measured"}
    z = stats.norm.ppf(1 - alpha / 2)
    (pa, (la, ua)), (pb, (lb, ub)) = ((r["top1"], top1(round(r["top1"] * r["n"]), r["n"], z)
                                       ["ci95"]) for r in (ra, rb))
    d = pb - pa
    lo = d - math.sqrt((pb - lb) ** 2 + (ua - pa) ** 2)
    hi = d + math.sqrt((ub - pb) ** 2 + (pa - la) ** 2)
    verdict = "higher" if lo > 0 else "lower" if hi < 0 else "no detectable change"
    return {"difference": d, "ci95": [lo, hi], "n": [ra["n"], rb["n"]], "verdict": verdict}


def _changed(pa, pb):
    if not pa or not pb or len(pa) != len(pb):
        return None
    return sum(1 for x, y in zip(pa, pb) if x != y)


def _warnings(ra, rb) -> list:
    out = []
    for what, (key, fields) in SAME.items():
        da, db = ra.get(key) or {}, rb.get(key) or {}
        differs = [f for f in fields if da.get(f) != db.get(f)]
        if differs:
            detail = ", ".join(f"{f}: {da.get(f)} vs {db.get(f)}" for f in differs)
            out.append(f"the {what} differ ({detail[:240]})")
    if ra.get("source") != rb.get("source"):
        out.append(f"different sources ({ra.get('source')} vs {rb.get('source')})")
    return out


def _mean(xs):
    return sum(xs) / len(xs)


def _var(xs):
    m = _mean(xs)
    return sum((x - m) ** 2 for x in xs) / (len(xs) - 1)


def compare_table(result: dict) -> str:
    lines = [f"A: {result['a']}", f"B: {result['b']}"]
    lines += [f"warning: {w}" for w in result["warnings"]]
    family = result["intervals"]
    if family["rows"] > 1:
        lines.append(f"intervals: {family['together']:.0%} for the {family['rows']} rows "
                     f"together (each row's at {family['each_row']:.1%})")
    for r in result["rows"]:
        lat, acc = r["latency"], r["top1"]
        ci = f" [{lat['ci95'][0]:.2f}, {lat['ci95'][1]:.2f}]" if lat["ci95"] else ""
        lines.append(f"{r['b']} vs {r['a']}: p50 x{lat['ratio']:.2f}{ci} -> {lat['verdict']}")
        if acc["difference"] is not None:
            lo, hi = (100 * v for v in acc["ci95"])
            changed = "" if r["changed_predictions"] is None else \
                f"; {r['changed_predictions']} prediction(s) changed"
            lines.append(f"    top-1 {100 * acc['difference']:+.1f} points [{lo:+.1f}, {hi:+.1f}]"
                         f" -> {acc['verdict']}{changed}")
    return "\n".join(lines)
