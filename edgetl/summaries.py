"""What the CLI prints after each stage: short tables that fit a 100-column terminal."""
import sys

from .core import exits
from .core.console import render

NOT_HELD_OUT = ("no test split: these top-1s are on the validation split, which early stopping "
                "and the int8 budget chose on, so they are not held out (add a test/ folder)")


def _top1(value, ci) -> str:
    return "-" if value is None else f"{value:.4f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]"
                                                       if ci else "")


def train_summary(m: dict) -> str:
    from rich.table import Table
    table = Table()                           # a title would wrap over this narrow table
    for col in ("split", "images", "top-1 [95% CI]"):
        table.add_column(col)
    for split in ("val", "test"):
        table.add_row(split, str(m[split]["n"]), _top1(m[split]["top1"], m[split].get("ci95")))
    extra = f"best epoch {m['best_epoch']}/{m['epochs_run']}, {m['wall_seconds']:.0f} s"
    if m["skipped_images"]["count"]:
        extra += f", {m['skipped_images']['count']} unreadable image(s) skipped"
    if m.get("ignored_files"):
        extra += f", {len(m['ignored_files'])} non-image file(s) ignored"
    if not m["test"]["n"]:
        extra += "\n" + NOT_HELD_OUT
    return f"{m['model']} @ {m['img_size']} px, {m['strategy']}\n" + render(table) + extra


def export_summary(manifest: dict) -> str:
    from rich.table import Table
    table = Table(title=f"builds ({manifest['eval_split']} split, n={manifest['n']})")
    for col in ("build", "MB", "top-1 [95% CI]", "agree raw / decided", "runtime"):
        table.add_column(col)
    for a in manifest["artifacts"]:
        p = a["parity"]
        agree = "-" if "top1_agreement" not in p else f"{p['top1_agreement']:.3f}" + (
            f" / {p['decided_agreement']:.3f} ({p['ties']} ties)" if p.get("ties") else "")
        table.add_row(a["name"], f"{a['size_bytes'] / 1e6:.2f}",
                      _top1(a["test_top1"], (a.get("top1") or {}).get("ci95")), agree,
                      a.get("runtime", "not run here"))
    ref = ", ".join(f"{k} {v:.4f}" for k, v in manifest["reference_top1"].items())
    text = render(table) + f"PyTorch reference top-1: {ref}; {manifest['wall_seconds']:.0f} s"
    text += ("\nagreement: with the PyTorch reference, every image (raw) and without the int8 "
             "near-ties the gate leaves out (decided)")
    if manifest["eval_split"] == "val":
        text += "\n" + NOT_HELD_OUT
    text += "".join(f"\n{a['name']}: {delegation_text(a['delegation'])}"
                    for a in manifest["artifacts"] if a.get("delegation"))
    q = manifest.get("quantization")
    if q:
        from .quantizing.decision import evidence_text
        steps = ", ".join(s["step"] for s in q["mitigation"]) or "none needed"
        text += (f"\nint8 ({q['method']}, {q['weight_range']}-range weights): validation drop "
                 f"{q['val_drop_points']:.2f} points (budget {q['max_int8_drop']}): "
                 f"{q.get('budget', '-')}" + (f", {evidence_text(q)}" if q.get("paired") else "")
                 + f"; mitigation: {steps}" + (f" (shipped {q['shipped_step']})"
                                               if q.get("shipped_step") else "")
                 + f"; float blocks: {', '.join(q['float_blocks']) or 'none'}")
    return text


def delegation_text(d: dict) -> str:
    """Where an ExecuTorch program runs: all in its delegate, or which ops stay portable."""
    where = ", ".join(d["delegate_calls"]) or "no delegate"
    if d["fully_delegated"]:
        return f"fully delegated to {where}"
    left = ", ".join(f"{op} x{n}" for op, n in sorted(d["portable_ops"].items()))
    return f"NOT fully delegated: {where}, and on portable kernels {left}"


def targets_summary() -> str:
    """Every shipped profile: where it runs, what it measures, the budgets it holds."""
    from rich.table import Table
    from .benchmarking.targets import available, load_target, resolve
    table = Table()
    table.add_column("target", no_wrap=True)              # a name the user types: whole
    for col in ("device", "builds", "runtimes", "p50 budget", "min top-1"):
        table.add_column(col, overflow="fold")
    for name in available():
        t = load_target(name)
        table.add_row(name, t.device, ", ".join(b.build for b in t.builds),
                      ", ".join(dict.fromkeys(b.runtime for b in t.builds)),
                      f"{t.builds[0].latency_budget_ms:g} ms", f"{t.builds[0].min_top1:g}")
    return (render(table) + f"profiles in {resolve(available()[0]).parent}; use "
            "--target NAME, or --target FILE.toml for your own")


def report_summary(report: dict) -> str:
    from .quantizing.quant_report import summary_lines
    return "\n".join(summary_lines(report))


def bench_exit(result: dict) -> int:
    """Print the bench table; VERDICT_FAILED if a build failed or a target's budget was missed."""
    from .benchmarking.table import table
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
        return exits.VERDICT_FAILED
    return exits.VERDICT_FAILED if failed else exits.OK


def emulator_usage(launcher, arch: str, folder) -> str:
    env = f"EDGETL_EMULATED_DIR={folder} " if folder else ""
    return (f"emulated {arch} device ready: {launcher} is its Python (qemu, Debian 12 userland)\n"
            f"  check a run's builds on ARM:  {env}edgetl bench RUN --target "
            "raspberry-pi-5-emulated\n"
            f"  or any build:                 {env}edgetl bench RUN --device emulated:{arch}\n"
            f"  as an SSH device's Python:    --device ssh://user@host --python {launcher}\n"
            "Accuracy and agreement come from ARM kernels; latency under emulation is not "
            "measured.")
