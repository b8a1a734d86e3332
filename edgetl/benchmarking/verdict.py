"""A target's verdict, judged on intervals: a latency budget passes when the p50's 95% interval
lies under it, fails when the interval lies above it, and is inconclusive when it straddles it
(or there is no interval: one trial); min_top1 the same way on the top-1's Wilson interval.
Inconclusive fails the target unless the user allows it. Each check says why."""

PASS, FAIL, INCONCLUSIVE = "pass", "fail", "inconclusive"


def judge_upper(value, ci, limit, what: str, unit: str) -> tuple:
    """(outcome, reason) of `value` (interval `ci`) against an upper limit."""
    shown = f"{what} {value:.2f}{unit}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")
    if ci is None:
        return INCONCLUSIVE, f"{shown}: one trial gives no interval; run more trials"
    if ci[1] <= limit:
        return PASS, f"{shown} <= budget {limit:g}{unit}"
    if ci[0] > limit:
        return FAIL, f"{shown} > budget {limit:g}{unit}"
    return INCONCLUSIVE, (f"{shown} straddles budget {limit:g}{unit}: raise --time-budget, "
                          "quiet the device, or --allow-inconclusive")


def judge_lower(record: dict, limit: float) -> tuple:
    """(outcome, reason) of a top-1 record (intervals.top1) against min_top1."""
    top1, ci, n = record["top1"], record["ci95"], record["n"]
    shown = f"top-1 {top1:.3f} [{ci[0]:.3f}, {ci[1]:.3f}] n={n}"
    if ci[0] >= limit:
        return PASS, f"{shown} >= min_top1 {limit:g}"
    if ci[1] < limit:
        return FAIL, f"{shown} < min_top1 {limit:g}"
    return INCONCLUSIVE, (f"{shown} straddles min_top1 {limit:g}: {n} images cannot tell; "
                          "export with a larger --bundle-size, or --allow-inconclusive")


def verdict(results: list, target, allow_inconclusive: bool = False,
            export_failures: list = ()) -> dict:
    """Pass only if every build the profile names ran, no check failed (or, unless allowed,
    was inconclusive), and the export met its own gates (parity, the int8 budget)."""
    checks = [{"build": "export", "runtime": "-", "passed": False, "outcome": FAIL,
               "reason": failure} for failure in export_failures]
    for b in target.builds:
        row = next((r for r in results if r["build"] == b.build and r["runtime"] == b.runtime),
                   None)
        if row is None or row["status"] != "ok":
            reason = row.get("error", "not measured") if row else "not measured"
            checks.append({"build": b.build, "runtime": b.runtime, "passed": False,
                           "outcome": FAIL, "reason": reason})
            continue
        checks.append(_check(row, b, allow_inconclusive))
    return {"passed": all(c["passed"] for c in checks), "checks": checks,
            "allow_inconclusive": allow_inconclusive,
            "left_out": [{"build": b.build, "runtime": b.runtime, "reason": "optional; its "
                          f"exporter is not installed here (pip install '{need}')"}
                         for b, need in target.left_out]}


def _check(row: dict, b, allow_inconclusive: bool) -> dict:
    judged = []
    lat = row.get("latency_ms") or {}
    if row.get("emulated"):
        judged.append((PASS, "latency not measured: emulated CPU"))
    else:
        key = "p50" if "p50" in lat else "mean"
        judged.append(judge_upper(lat[key], lat.get(f"{key}_ci95"), b.latency_budget_ms,
                                  key, " ms"))
    if row.get("top1_record"):
        judged.append(judge_lower(row["top1_record"], b.min_top1))
    else:
        host = row.get("host_top1")
        judged.append((PASS, "top-1 not scored on the device (it only times), so min_top1 is "
                       "not judged" +
                       (f" (host LiteRT at export: {host:.3f}, not the device's)"
                        if host is not None else "")))
    outcomes = [o for o, _ in judged]
    outcome = FAIL if FAIL in outcomes else INCONCLUSIVE if INCONCLUSIVE in outcomes else PASS
    passed = outcome == PASS or (outcome == INCONCLUSIVE and allow_inconclusive)
    return {"build": b.build, "runtime": b.runtime, "passed": passed, "outcome": outcome,
            "p50_ms": lat.get("p50", lat.get("mean")), "p50_ci95": lat.get("p50_ci95"),
            "top1": row.get("top1"), "top1_ci95": (row.get("top1_record") or {}).get("ci95"),
            "latency_budget_ms": b.latency_budget_ms, "min_top1": b.min_top1,
            "reason": "; ".join(r for _, r in judged)}


def verdict_text(result) -> str:
    v = result["verdict"]
    mark = {PASS: "ok  ", FAIL: "FAIL", INCONCLUSIVE: "??  "}
    lines = [f"target {result['target']['name']}: {'PASS' if v['passed'] else 'FAIL'}"]
    lines += [f"  {mark[c.get('outcome', PASS if c['passed'] else FAIL)]} {c['build']} "
              f"({c['runtime']}): {c['reason']}" for c in v["checks"]]
    lines += [f"  --   {c['build']} ({c['runtime']}): {c['reason']}"
              for c in v.get("left_out", [])]
    if any(c.get("outcome") == INCONCLUSIVE for c in v["checks"]):
        lines.append("  ?? inconclusive: " + ("allowed (--allow-inconclusive)"
                                              if v.get("allow_inconclusive")
                                              else "fails the target"))
    return "\n".join(lines)
