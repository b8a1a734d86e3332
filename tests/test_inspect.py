"""`edgetl predict` in the builds' own runtimes, `edgetl compare` on bench reports, and the exit
codes the CLI documents."""
import json
import re
import shutil
from pathlib import Path

import pytest
from PIL import Image

import edgetl
from conftest import cli
from edgetl import cli as cli_module
from edgetl.core import exits
from edgetl.inspecting import compare, predict

README = Path(__file__).resolve().parent.parent / "README.md"


def _test_folder(run: Path) -> Path:
    return Path(json.loads((run / "train" / "split.json").read_text())["root"]) / "test"


def test_predict_classifies_a_folder_with_a_build_at_the_accuracy_its_export_measured(exported,
                                                                                      tmp_path):
    """The int8 TFLite build on the test split's class folders (read as training reads them):
    the same top-1 the export measured on those images in LiteRT, every image in the JSON."""
    run, manifest = exported
    res = cli("predict", run, _test_folder(run), "--build", "tflite-int8", "--json",
              tmp_path / "p.json")
    assert res.returncode == 0, res.stderr[-2000:]
    result = json.loads((tmp_path / "p.json").read_text())
    measured = next(a for a in manifest["artifacts"] if a["name"] == "tflite-int8")
    n = len(result["predictions"])
    assert result["runtime"] == "litert" and n == manifest["n"]
    assert abs(result["accuracy"]["top1"] - measured["test_top1"]) * n <= 1.0 + 1e-9
    assert f"top-1 {result['accuracy']['top1']:.3f}" in res.stdout
    assert all(len(p["top"]) == 3 and p["top"][0][0] == p["label"] for p in result["predictions"])


def test_predict_breaks_a_tie_as_the_export_does():
    """An int8 build's outputs tie often (clothing-small: one test photo scored longsleeve and
    outwear equally); predict's label is then the argmax the export measured, the first class."""
    import numpy as np
    labels = [f"c{i}" for i in range(10)]
    for first in range(9):
        logits = np.zeros(10, np.float32)
        logits[[first, 9]] = 2.5                  # a tie between `first` and the last class
        row = predict._row(Path("x.jpg"), logits, labels, 3)
        assert row["label"] == labels[int(np.argmax(logits))] == labels[first], row
        assert [c for c, _ in row["top"][:2]] == [labels[first], "c9"]


def test_predict_reads_heic_skips_a_broken_photo_and_ignores_stray_files(exported, tmp_path):
    run, _ = exported
    source = sorted((_test_folder(run) / "class1").glob("*.jpg"))[0]
    folder = tmp_path / "photos"
    folder.mkdir()
    import pillow_heif
    pillow_heif.register_heif_opener()                        # pillow-heif's encoder
    Image.open(source).save(folder / "phone.heic", quality=95)
    shutil.copy(source, folder / "same.jpg")
    (folder / "broken.jpg").write_bytes(source.read_bytes()[:200])
    (folder / "notes.txt").write_text("not a photo")
    result = predict.predict(run, [folder], build="onnx-fp32")
    by_name = {Path(p["image"]).name: p for p in result["predictions"]}
    assert set(by_name) == {"phone.heic", "same.jpg"}
    assert by_name["phone.heic"]["label"] == by_name["same.jpg"]["label"]
    assert [Path(s["image"]).name for s in result["skipped"]] == ["broken.jpg"]
    assert [Path(p).name for p in result["ignored"]] == ["notes.txt"]
    assert result["accuracy"] is None                   # "photos" names no class


def test_predict_refuses_what_it_cannot_use_in_one_line(exported, tmp_path):
    run, _ = exported
    from conftest import one_line
    assert "--build nope: " in one_line(cli("predict", run, tmp_path, "--build", "nope"))
    assert "no such image or folder" in one_line(cli("predict", run, tmp_path / "none.jpg"))
    assert "no image files in" in one_line(cli("predict", run, tmp_path))
    assert "neither a bundle folder" in one_line(cli("predict", tmp_path, tmp_path))


def _report(tmp_path, name, p50s, top1=0.9, n=200, builds=("b",), **machine) -> Path:
    rows = [{"build": build, "runtime": "r", "status": "ok", "latency_ms": {
        "p50": sum(p50s) / len(p50s), "trial_p50": p50s},
        "top1_record": {"top1": top1, "n": n, "ci95": None}, "predictions": [0] * n}
        for build in builds]
    report = {"machine": {"hostname": "h", **machine}, "settings": {"threads": 2},
              "source": "run", "results": rows}
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(report))
    return path


def test_compare_says_faster_slower_or_no_detectable_change_with_its_interval(tmp_path):
    """B over A from the per-trial p50s (Welch on logs): a halved latency is 'faster' with an
    interval around 0.5; the same trials are 'no detectable change'; slower B exits 1."""
    a = _report(tmp_path, "a", [1.00, 1.02, 0.98, 1.01])
    half = _report(tmp_path, "half", [0.50, 0.51, 0.49, 0.505])
    r = compare.compare(a, half)["rows"][0]["latency"]
    assert r["verdict"] == "faster" and r["ci95"][0] < 0.5 < r["ci95"][1] < 0.55
    same = compare.compare(a, a)
    assert same["rows"][0]["latency"]["verdict"] == "no detectable change"
    assert same["rows"][0]["changed_predictions"] == 0 and not same["regressed"]
    res = cli("compare", half, a)
    assert res.returncode == exits.VERDICT_FAILED and "-> slower" in res.stdout
    worse = _report(tmp_path, "worse", [1.0, 1.01, 0.99], top1=0.7, hostname="other")
    out = compare.compare(a, worse)
    assert out["rows"][0]["top1"]["verdict"] == "lower" and out["regressed"]
    assert any("machine differ (hostname: h vs other)" in w for w in out["warnings"])


def test_compare_holds_its_intervals_jointly_over_the_rows_it_compares(tmp_path):
    """A 4% gap over 4 trials a side: 'faster' for one row at 95%; among six such rows each
    row's interval widens (Bonferroni, 99.2%) so the six hold together at 95%, and it is no
    longer called; the table says at what level."""
    six = [f"b{i}" for i in range(6)]
    a = _report(tmp_path, "a", [1.00, 1.02, 0.98, 1.01], builds=six)
    b = _report(tmp_path, "b", [0.96, 0.98, 0.94, 0.97], builds=six)
    one = compare.compare(a, b, "b0", "b0")
    assert one["rows"][0]["latency"]["verdict"] == "faster"
    assert one["intervals"] == {"together": 0.95, "rows": 1, "each_row": 0.95}
    together = compare.compare(a, b)
    assert together["intervals"]["rows"] == 6
    assert together["intervals"]["each_row"] == pytest.approx(1 - 0.05 / 6)
    for row in together["rows"]:
        lo, hi = row["latency"]["ci95"]
        assert lo < one["rows"][0]["latency"]["ci95"][0] and hi > 1
        assert row["latency"]["verdict"] == "no detectable change"
    assert "intervals: 95% for the 6 rows together (each row's at 99.2%)" in \
        compare.compare_table(together)


def test_compare_two_benches_of_a_real_run(exported, tmp_path):
    """A bench report against itself: no detectable change, no prediction changed; fp32
    against int8 of the same report, named with --build-a/--build-b, gives a ratio and a
    verdict of the three."""
    run, _ = exported
    from edgetl.benchmarking import session
    session.benchmark(run, out=tmp_path / "bench", runtimes="litert", warmup=1, iters=5,
                      trials=3)
    res = cli("compare", tmp_path / "bench", tmp_path / "bench" / "report.json")
    assert res.returncode == 0 and "tflite-int8 (litert) vs tflite-int8 (litert): p50 x1.00" \
        in res.stdout and "no detectable change" in res.stdout
    res = cli("compare", tmp_path / "bench", tmp_path / "bench", "--build-a", "tflite-fp32",
              "--build-b", "tflite-int8", "--json", tmp_path / "c.json")
    row = json.loads((tmp_path / "c.json").read_text())["rows"][0]
    assert row["latency"]["verdict"] in compare.VERDICTS and row["latency"]["ci95"]
    assert res.returncode in (0, 1)


def test_exit_codes_are_distinct_documented_and_used(tmp_path, monkeypatch):
    """One code per kind of failure; the README's table lists each with its meaning."""
    assert len(set(exits.MEANING)) == len(exits.MEANING) == 6
    text = README.read_text()
    for code, meaning in exits.MEANING.items():
        assert re.search(rf"^\| {code} \| {re.escape(meaning)} \|$", text, re.M), code
    assert cli("train", tmp_path / "none", "--out", tmp_path / "r").returncode == \
        exits.BAD_INPUT

    def bug(args):
        raise ZeroDivisionError("a bug")
    monkeypatch.setattr(cli_module, "_dispatch", bug)       # the code path a bug takes
    assert cli_module.main(["targets"]) == exits.INTERNAL
    monkeypatch.setattr(cli_module, "_dispatch", lambda a: (_ for _ in ()).throw(
        edgetl.ParityError("onnx-int8: parity below threshold", {})))
    assert cli_module.main(["targets"]) == exits.INT8_OR_PARITY
