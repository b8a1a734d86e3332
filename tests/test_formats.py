"""The format table walked end to end: every format it lists is exported from a tiny model,
bundled with the file name, I/O description and extras its entry gives, and benched in every
runtime the runner's table names for it (a runtime that is not installed here is a skipped row,
never a missing one). A new format that misses a step fails here."""
import json
import shutil

import pytest

import edgetl
from edgetl.benchmarking import runtimes, session
from edgetl.exporting.builds import plan
from edgetl.exporting.formats import FORMATS, model_file


@pytest.fixture(scope="module")
def every_format(exported, tmp_path_factory):
    run = tmp_path_factory.mktemp("formats") / "run"
    shutil.copytree(exported[0] / "train", run / "train")
    manifest = edgetl.export(run, formats=",".join(FORMATS), precisions="fp32,fp16",
                             bundle_size=6)
    return run, manifest


def test_every_format_in_the_table_is_built_bundled_and_benched(every_format):
    run, manifest = every_format
    builds = plan(",".join(FORMATS), "fp32,fp16")
    assert {b.format for b in builds} == set(FORMATS)              # each format builds
    made = {a["name"]: a for a in manifest["artifacts"]}
    assert set(made) == {b.name for b in builds}
    for b in builds:
        fmt, folder = FORMATS[b.format], run / "export" / b.name
        bundle = json.loads((folder / "manifest.json").read_text())
        assert bundle["model_file"] == model_file(b) and bundle["model_file"].endswith(fmt.suffix)
        assert (folder / bundle["model_file"]).is_file() and "run.py" in bundle["sha256"]
        assert bundle["input"]["shape"][-1] in (bundle["preprocessing"]["img_size"], 3)
        assert fmt.runtimes, f"{b.format}: no runtime in the runner's table runs it"
        if fmt.runs_here():
            assert made[b.name]["test_top1"] is not None and made[b.name]["parity"]["passed"]
    report = session.benchmark(run, runtimes=",".join(runtimes.NAMES[:-1]), warmup=0,
                               iters=2, trials=1, out=run / "bench")
    rows = {(r["build"], r["runtime"]): r for r in report["results"]}
    for b in builds:
        for rt in FORMATS[b.format].runtimes:
            row = rows[(b.name, rt)]
            expected = ("ok",) if runtimes.installed(rt) else ("skipped",)
            assert row["status"] in expected, row
