"""What a bench's numbers rest on, beside them: the conditions each row ran under (read on the
device in every trial, summarised per row) and the flip audit (every bundle image whose top-1
changes between fp32 and a build, or between two runtimes of one build)."""
import numpy as np

FLIPS_SHOWN = 20                      # per row in report.md (report.json has them all)


def summarise_conditions(trials: list) -> dict | None:
    """One row's trial conditions -> the ranges a reader needs to trust or doubt it."""
    seen = [c for c in trials if c]
    if not seen:
        return None
    values = lambda k: [c[k] for c in seen if c.get(k) is not None]
    span = lambda v: [min(v), max(v)] if v else None
    probes = values("probe_us_before") + values("probe_us_after")
    mhz = [f for c in seen for f in (c.get("cpu_mhz") or [])]
    temps = [t for c in seen for t in (c.get("temperatures_c") or {}).values()]
    return {"trials": len(seen), "loadavg_1min": span([c["loadavg"][0] for c in seen
                                                        if c.get("loadavg")]),
            "others_cpu_pct": span(values("others_cpu_pct")),
            "steal_pct": span(values("steal_pct")), "waited_s": sum(values("waited_s")),
            "idle_before_every_trial": all(c.get("idle_before", True) for c in seen),
            "cpu_mhz": span(mhz), "governor": sorted(set(values("governor"))) or None,
            "temperature_c_max": max(temps) if temps else None,
            "throttled": sorted(set(values("throttled"))) or None,
            "power_mode": sorted(set(values("power_mode"))) or None,
            "probe_us": span(probes),
            "probe_drift_pct": (max(probes) - min(probes)) / min(probes) * 100 if probes
            else None}


def conditions_lines(result: dict) -> list:
    """report.md's conditions table."""
    rows = [r for r in result["results"] if r.get("conditions_summary")]
    if not rows:
        return ["Conditions: none recorded (emulated or adb rows, or an older runner)."]
    f = _cell
    lines = ["## Conditions (read on the device in every trial)", "",
             "| build | runtime | load 1 min | others' CPU % | steal % | waited s | CPU MHz | "
             "governor | max temp C | throttled | speed probe us | probe drift % |",
             "|" + "---|" * 12]
    for r in rows:
        c = r["conditions_summary"]
        lines.append(f"| {r['build']} | {r['runtime']} | {f(c['loadavg_1min'], '.2f')} | "
                     f"{f(c['others_cpu_pct'])} | {f(c['steal_pct'])} | {f(c['waited_s'])} | "
                     f"{f(c['cpu_mhz'], '.0f')} | {f(c['governor'])} | "
                     f"{f(c['temperature_c_max'])} | {f(c['throttled'] or c['power_mode'])} | "
                     f"{f(c['probe_us'], '.0f')} | {f(c['probe_drift_pct'])} |")
    lines += ["", "others' CPU: what other processes used during timing, in % of one core; "
              "speed probe: the best time of a fixed small GEMM before and after each trial, "
              "so a slow spell of the machine shows; drift over 10% means the machine changed "
              "speed during the bench."]
    return lines


def _cell(value, fmt: str = ".1f") -> str:
    """A conditions cell: '-', a number, a [low, high] range, or a list of names."""
    if value is None:
        return "-"
    if isinstance(value, (int, float)):
        return format(value, fmt)
    if isinstance(value, list) and value and isinstance(value[0], (int, float)):
        return f"{value[0]:{fmt}}-{value[1]:{fmt}}"
    return ", ".join(map(str, value)) if isinstance(value, list) else str(value)


def flip_audit(results: list, bundles: dict) -> dict:
    """{"vs_fp32": {row: [flip]}, "between_runtimes": {build: [flip]}}: each flip names the
    image, its label, the predictions and fp32's margin (top-1 minus top-2 logit). `bundles`:
    build name -> (labels, eval.npz arrays) of the bundles measured."""
    vs_fp32, between = {}, {}
    by_build = {}
    for r in results:
        if r["status"] != "ok" or r.get("predictions") is None or r["build"] not in bundles:
            continue
        class_names, data = bundles[r["build"]]
        preds = np.array(r["predictions"])
        by_build.setdefault(r["build"], []).append((r["runtime"], preds))
        if "fp32" in data and r.get("precision") != "fp32":
            vs_fp32[f"{r['build']} ({r['runtime']})"] = [
                _flip(i, class_names, data, {"fp32": int(data["fp32"][i]),
                                             "build": int(preds[i])})
                for i in np.flatnonzero(preds != data["fp32"])]
    for build, rows in by_build.items():
        class_names, data = bundles[build]
        for (rt_a, a), (rt_b, b) in zip(rows, rows[1:]):
            between[f"{build}: {rt_a} vs {rt_b}"] = [
                _flip(i, class_names, data, {rt_a: int(a[i]), rt_b: int(b[i])})
                for i in np.flatnonzero(a != b)]
    return {"vs_fp32": vs_fp32, "between_runtimes": between}


def _flip(i, class_names, data, predictions: dict) -> dict:
    flip = {"index": int(i), "label": class_names[int(data["labels"][i])],
            "predictions": {k: class_names[v] for k, v in predictions.items()}}
    if "names" in data:
        flip["image"] = str(data["names"][i])
    if "fp32_margin" in data:
        flip["fp32_margin"] = float(data["fp32_margin"][i])
    return flip


def flip_lines(result: dict) -> list:
    """report.md's flip audit."""
    audit = result.get("flips") or {}
    lines = ["## Flip audit (bundle images whose top-1 changes)", ""]
    groups = list((audit.get("vs_fp32") or {}).items()) + \
        list((audit.get("between_runtimes") or {}).items())
    if not groups:
        return lines + ["No build was compared (no fp32 predictions in these bundles)."]
    for title, flips in groups:
        lines.append(f"- **{title}**: {len(flips)} image(s)" + (":" if flips else ""))
        for f in flips[:FLIPS_SHOWN]:
            preds = ", ".join(f"{k} {v}" for k, v in f["predictions"].items())
            margin = f", fp32 margin {f['fp32_margin']:.2f}" if "fp32_margin" in f else ""
            lines.append(f"  - {f.get('image', '#' + str(f['index']))}: label {f['label']}; "
                         f"{preds}{margin}")
        if len(flips) > FLIPS_SHOWN:
            lines.append(f"  - ... {len(flips) - FLIPS_SHOWN} more in report.json")
    return lines
