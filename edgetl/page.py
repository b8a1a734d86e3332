"""RUN/report.html: one self-contained page (styles inline, images embedded as data: URIs, no
script from anywhere else) that opens from disk. Every stage rewrites it from the files on disk
(RUN/train, RUN/export, RUN/bench), so it always shows the latest of each; a section appears
once its stage has run. It reads files only: no stage's code is imported here."""
import base64
import html
import io
import json
import time
from pathlib import Path

from .core.files import atomic_write

STYLE = """body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222}
h1{font-size:1.6em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ddd;padding:.25em .5em;
text-align:right}th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
.pass{color:#070}.fail{color:#b00}.note{color:#666}.thumbs{display:flex;flex-wrap:wrap;gap:8px}
figure{margin:0;width:112px;font-size:11px;text-align:center}figure img{width:96px;height:96px;
object-fit:cover}img.plot{max-width:100%}"""
CHECK = """<script>addEventListener('load',()=>{const s=[...document.querySelectorAll('section')];
document.body.dataset.rendered=s.filter(e=>e.offsetHeight>0).map(e=>e.id).join(' ');
document.body.dataset.brokenImages=[...document.images].filter(i=>!i.naturalWidth).length;});
</script>"""
THUMB, PER_CLASS_THUMBS, GALLERY = 96, 4, 24


def refresh(run) -> Path:
    """Write RUN/report.html from what RUN holds now; returns its path."""
    run = Path(run)
    read = lambda *p: _json(run.joinpath(*p))
    split, metrics = read("train", "split.json"), read("train", "metrics.json")
    export, bench = read("export", "manifest.json"), read("bench", "report.json")
    sections = [s for s in (
        _data(split) if split else "",
        _training(run, metrics, split) if metrics else "",
        _int8(run, export) if export and export.get("quantization") else "",
        _builds(export) if export else "",
        _bench(run, bench) if bench else "",
        _flips(run, bench) if bench and bench.get("flips") else "") if s]
    title = f"edgetl run {html.escape(run.resolve().name)}"
    page = (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{title}</title>"
            f"<style>{STYLE}</style></head><body><h1>{title}</h1><p class=note>written "
            f"{time.strftime('%Y-%m-%d %H:%M:%S')} from {html.escape(str(run.resolve()))}"
            "</p>" + "".join(sections) + CHECK + "</body></html>")
    path = run / "report.html"
    atomic_write(path, lambda p: Path(p).write_text(page))
    return path


def _json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _section(key: str, title: str, body: str) -> str:
    return f"<section id={key}><h2>{title}</h2>{body}</section>"


def _table(head: list, rows: list) -> str:
    cells = lambda r, tag: "".join(f"<{tag}>{c}</{tag}>" for c in r)
    return ("<table><tr>" + cells(head, "th") + "</tr>" +
            "".join("<tr>" + cells(r, "td") + "</tr>" for r in rows) + "</table>")


def _top1(record) -> str:
    if not record or record.get("top1") is None:
        return "-"
    lo, hi = record.get("ci95") or (None, None)
    ci = f" [{lo:.3f}, {hi:.3f}]" if lo is not None else ""
    return f"{record['top1']:.3f}{ci} n={record['n']}"


def _png(path: Path, alt: str) -> str:
    if not path.is_file():
        return f"<p class=note>{html.escape(alt)}: no plot ({path.name} missing)</p>"
    data = base64.b64encode(path.read_bytes()).decode()
    return f"<img class=plot alt='{html.escape(alt)}' src='data:image/png;base64,{data}'>"


def _thumb(source, caption: str) -> str:
    """A figure with a JPEG thumbnail of an image file or a uint8 HxWx3 array."""
    from PIL import Image
    try:
        if isinstance(source, (str, Path)):
            from .bundle_runner import open_rgb
            img = open_rgb(source, THUMB)
        else:
            img = Image.fromarray(source)
        img.thumbnail((THUMB * 2, THUMB * 2))
        buf = io.BytesIO()
        img.convert("RGB").save(buf, "JPEG", quality=80)
        src = "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()
        inner = f"<img alt='' src='{src}'>"
    except (OSError, ValueError):
        inner = "<div class=note>(image not readable here)</div>"
    return f"<figure>{inner}<figcaption>{html.escape(caption)}</figcaption></figure>"


def _data(split: dict) -> str:
    root, classes = Path(split["root"]), split["classes"]
    counts = {s: [sum(1 for _, y in split[s] if y == k) for k in range(len(classes))]
              for s in ("train", "val", "test")}
    rows = [[html.escape(c)] + [counts[s][k] for s in counts] for k, c in enumerate(classes)]
    thumbs = "".join(_thumb(root / p, classes[y]) for k in range(len(classes))
                     for p, y in [e for e in split["train"] if e[1] == k][:PER_CLASS_THUMBS])
    skipped, ignored = split.get("skipped", []), split.get("ignored", [])
    notes = (f"<p>{len(skipped)} unreadable image(s) skipped" + "".join(
        f"<br><code>{html.escape(str(s.get('path')))}</code>: {html.escape(str(s.get('reason')))}"
        for s in skipped[:20]) + "</p>" if skipped else "") + (
        f"<p>{len(ignored)} file(s) without an image extension ignored, e.g. "
        f"<code>{html.escape(ignored[0])}</code></p>" if ignored else "")
    return _section("data", "Data", f"<p>{html.escape(str(root))} ({html.escape(split['source'])}"
                    f"), {len(classes)} classes</p>" + _table(["class", "train", "validation",
                                                              "test"], rows) +
                    notes + f"<div class=thumbs>{thumbs}</div>")


def _training(run: Path, m: dict, split) -> str:
    classes = m["classes"]
    per_class = [[html.escape(c), "-" if a is None else f"{a:.3f}"]
                 for c, a in m["per_class"].items()]
    cm = m.get("confusion_matrix") or []
    matrix = _table(["true \\ predicted"] + [html.escape(c) for c in classes],
                    [[html.escape(classes[i])] + row for i, row in enumerate(cm)]) if cm else ""
    errors = m.get("val_errors") or []
    root = Path(split["root"]) if split else Path(".")
    gallery = "".join(_thumb(root / e["path"], f"{e['label']} -> {e['predicted']} "
                             f"({e['confidence']:.2f})") for e in errors)
    body = (f"<p>{html.escape(m['model'])} at {m['img_size']} px, strategy "
            f"{html.escape(m['strategy'])}: best epoch {m['best_epoch']} of {m['epochs_run']}, "
            f"{m['wall_seconds']} s</p>" + _table(["split", "top-1 [95% CI] n"], [
                ["validation", _top1(m["val"])], ["test", _top1(m["test"])]]) +
            _png(run / "train" / "curves.png", "training curves") +
            f"<h3>Per class ({m['per_class_split']})</h3>" + _table(["class", "top-1"], per_class)
            + f"<h3>Confusion matrix ({m['per_class_split']})</h3>" + matrix +
            "<h3>Worst validation errors</h3>" +
            (f"<div class=thumbs>{gallery}</div>" if errors else "<p class=note>none</p>"))
    return _section("training", "Training", body)


def _int8(run: Path, export: dict) -> str:
    q = export["quantization"]
    p = q.get("paired") or {}
    rows = [["method", html.escape(str(q.get("method")))],
            ["validation fp32 / int8", f"{q.get('val_fp32_top1', 0):.3f} / "
                                        f"{q.get('val_int8_top1', 0):.3f} (n={q.get('val_n')})"],
            ["drop (points)", f"{q.get('val_drop_points')} ({p.get('lost')} lost, "
                              f"{p.get('gained')} gained, p={p.get('p_value', 1):.2f})"],
            ["budget", html.escape(str(q.get("budget")))],
            ["shipped", html.escape(str(q.get("shipped_step")))],
            ["float blocks", html.escape(", ".join(q.get("float_blocks") or []) or "none")]]
    return _section("int8", "The int8 decision", _table(["", ""], rows) +
                    f"<p class=note>{html.escape(str(q.get('rule', '')))}</p>" +
                    _png(run / "export" / "quant_report.png", "quantization report"))


def _builds(export: dict) -> str:
    rows = [[html.escape(a["name"]), a["format"], a["precision"],
             f"{a['size_bytes'] / 1e6:.2f}", _top1(a.get("top1")),
             "-" if not a.get("parity") else
             f"{a['parity']['top1_agreement']:.3f} vs {html.escape(a['parity']['reference'])}"]
            for a in export["artifacts"]]
    failed = "".join(f"<p class=fail>{html.escape(str(f))}</p>" for f in export.get("failed", []))
    return _section("builds", "Builds", _table(
        ["build", "format", "precision", "MB", f"top-1 ({export.get('eval_split')})",
         "agreement"], rows) + failed)


def _bench(run: Path, report: dict) -> str:
    rows = []
    for r in report["results"]:
        lat, sp = r.get("latency_ms") or {}, r.get("int8_speedup_paired") or {}
        ci = lat.get("p50_ci95")
        rows.append([html.escape(r["build"]), html.escape(str(r["runtime"])), r["status"],
                     _top1(r.get("top1_record")),
                     "-" if not lat.get("p50") else f"{lat['p50']:.2f}" +
                     (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else ""),
                     "NOISY" if lat.get("noisy") else "",
                     "-" if not sp.get("value") else f"{sp['value']:.2f}x [{sp['ci95'][0]:.2f}, "
                                                     f"{sp['ci95'][1]:.2f}]"])
    verdict = report.get("verdict")
    lines = "" if not verdict else (
        f"<p class={'pass' if verdict['passed'] else 'fail'}><b>"
        f"{'PASS' if verdict['passed'] else 'FAIL'}</b> against "
        f"{html.escape(str((report.get('target') or {}).get('name')))}</p><ul>" + "".join(
            f"<li class={'pass' if c['passed'] else 'fail'}>{html.escape(c['build'])}: "
            f"{html.escape(c['reason'])}</li>" for c in verdict["checks"]) + "</ul>")
    m, s = report.get("machine", {}), report.get("settings", {})
    conditions = (f"<p class=note>{html.escape(str(m.get('processor')))} on "
                  f"{html.escape(str(m.get('hostname')))} ({html.escape(str(m.get('device')))}),"
                  f" {s.get('threads')} thread(s), batch {s.get('batch')}, trials "
                  f"{html.escape(str(s.get('trials')))}; recorded "
                  f"{html.escape(str(report.get('recorded')))}</p>")
    return _section("bench", "Bench", lines + conditions + _table(
        ["build", "runtime", "status", "top-1 [95% CI] n", "p50 ms [95% CI]", "", "int8 x"],
        rows) + _png(run / "bench" / "latency_vs_accuracy.png", "latency against accuracy"))


def _flips(run: Path, report: dict) -> str:
    import numpy as np
    figures = []
    for key, flips in (report["flips"].get("vs_fp32") or {}).items():
        build = key.split(" (")[0]
        npz = run / "export" / build / "eval.npz"
        images = np.load(npz)["images"] if npz.is_file() else None
        for f in flips[:GALLERY]:
            src = images[f["index"]] if images is not None else None
            caption = f"{key}: {f['predictions']['fp32']} -> {f['predictions']['build']} " \
                      f"(true {f['label']})"
            figures.append(_thumb(src, caption) if src is not None else
                           f"<figure><figcaption>{html.escape(caption)}</figcaption></figure>")
    body = f"<div class=thumbs>{''.join(figures)}</div>" if figures else \
        "<p class=note>no image changes its prediction between fp32 and a build</p>"
    return _section("flips", "Images whose prediction changes from fp32", body)


def refresh_or_warn(run, log=None) -> None:
    """refresh(), a failure a warning line: the stage's own outputs are written already."""
    try:
        refresh(run)
    except Exception as e:                  # noqa: BLE001 - the page must not undo a stage
        message = f"{Path(run) / 'report.html'} not refreshed ({e.__class__.__name__}: {e})"
        log.warning(message) if log else print(f"edgetl: warning: {message}")
