"""Numbers with their uncertainty: intervals against scipy's own, the paired int8 decision rule
on real counts, verdicts judged on intervals, and a real bench whose rows carry intervals,
conditions read on the device, end-to-end latency, a paired speed-up and the flip audit."""
import json
import math
import shutil

import numpy as np
import pytest
from scipy import stats

from edgetl import cli
from edgetl.benchmarking import session, verdict
from edgetl.benchmarking.audit import summarise_conditions
from edgetl.benchmarking.options import MIN_TRIALS
from edgetl.benchmarking.stats import merge_trials, paired_speedup, trials_to_reach
from edgetl.benchmarking.trials import Rounds
from edgetl.core import intervals
from edgetl.core.errors import ConfigError
from edgetl.quantizing import decision


def test_top1_intervals_are_wilsons():
    for k, n in ((93, 100), (0, 8), (8, 8), (341, 372)):
        ci = stats.binomtest(k, n).proportion_ci(method="wilson")
        assert intervals.top1(k, n)["ci95"] == pytest.approx([ci.low, ci.high], abs=1e-6)
    assert intervals.top1(0, 0)["ci95"] is None


def test_latency_intervals_are_t_intervals_on_the_logs():
    values = [2.10, 2.16, 2.05, 2.21, 2.12]
    g = intervals.geometric(values)
    lo, hi = stats.t.interval(0.95, len(values) - 1, loc=np.mean(np.log(values)),
                              scale=stats.sem(np.log(values)))
    assert g["ci95"] == pytest.approx([math.exp(lo), math.exp(hi)])
    assert g["value"] == pytest.approx(stats.gmean(values))
    assert intervals.geometric([3.0])["ci95"] is None


def test_rounds_go_on_only_while_the_budget_can_settle_a_row():
    """The trials' stopping rule on real per-trial p50s: a row is projected to the trials its
    +-2% needs at its spread (the t interval's own narrowing); rounds go on while some row gets
    there (or clears its latency budget) within what the budget has left, else they stop and
    say why."""
    rows = lambda *p50s: [{"latency_ms": {"p50": v}} for v in p50s]
    noisy, close = rows(5.8, 5.7, 5.6, 7.7, 6.0), rows(5.0, 5.2, 4.9, 5.1, 5.15)
    logs = np.log([5.0, 5.2, 4.9, 5.1, 5.15])
    need = trials_to_reach(merge_trials([t["latency_ms"] for t in close]), 2.0, 50)
    half = lambda k: stats.t.ppf(0.975, k - 1) * logs.std(ddof=1) / math.sqrt(k)
    assert half(need) <= math.log(1.02) < half(need - 1) and 5 < need < 15
    rounds = Rounds(None, 2.0, 120.0)
    assert rounds.stop_reason([close, noisy], elapsed=10.0) == ""         # 22 rounds left
    tight = rounds.stop_reason([close, noisy], elapsed=100.0)             # 1 round left
    assert "no row would reach +-2%" in tight and "after 5 rounds" in tight
    assert "no row would reach" in rounds.stop_reason([noisy], elapsed=10.0)
    assert rounds.stop_reason([close], elapsed=130.0) == \
        "the 120 s budget ran out after 5 rounds"
    stable = rows(5.0, 5.01, 4.99, 5.0, 5.02)
    assert rounds.stop_reason([stable, []], elapsed=1.0).startswith("every row stable")
    # a noisy row whose interval straddles its 6.5 ms budget: more rounds can clear it
    budgeted = Rounds(None, 2.0, 120.0, limits=(6.5,))
    assert merge_trials([t["latency_ms"] for t in noisy])["p50_ci95"][1] > 6.5
    assert budgeted.stop_reason([noisy], elapsed=10.0) == ""
    assert Rounds(3, 2.0, 120.0).stop_reason([noisy], 1.0) == "3 round(s), as asked"


def test_a_trial_waits_for_a_busy_machine_and_says_what_it_saw(monkeypatch):
    """A process spinning on a core beside the runner: the wait lasts its whole --wait-idle
    and records the other process's share; --wait-idle's default is $EDGETL_WAIT_IDLE, else
    10 s, and a value that is no number is one line naming the variable."""
    import subprocess
    import sys

    from edgetl.benchmarking.options import BenchOptions
    from edgetl.bundle_runner import wait_idle
    spin = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        seen = wait_idle(1.0)
    finally:
        spin.kill()
    assert not seen["idle_before"] and 0.75 <= seen["waited_s"] <= 1.25, seen
    assert seen["others_cpu_pct_before"] > 50, seen
    monkeypatch.delenv("EDGETL_WAIT_IDLE")
    assert BenchOptions().validate().wait_idle == 10.0
    assert BenchOptions(wait_idle=2.5).validate().wait_idle == 2.5
    monkeypatch.setenv("EDGETL_WAIT_IDLE", "0")
    assert BenchOptions().validate().wait_idle == 0.0
    monkeypatch.setenv("EDGETL_WAIT_IDLE", "soon")
    with pytest.raises(ConfigError, match="EDGETL_WAIT_IDLE='soon': give seconds"):
        BenchOptions().validate()


def test_a_bimodal_row_is_noisy_and_a_steady_one_is_not():
    """Trial p50s of ~1.4 or ~2.1 ms (measured here: benchmarks/results/ort_bimodality.json)."""
    trial = lambda p50: {"p50": p50, "p90": p50 * 1.1, "p99": p50 * 1.3, "runs": 100}
    bimodal = merge_trials([trial(v) for v in (1.37, 2.12, 1.35, 2.15, 1.40)])
    steady = merge_trials([trial(v) for v in (1.37, 1.36, 1.38, 1.37, 1.36)])
    assert bimodal["noisy"] and bimodal["half_width_pct"] > 20
    assert not steady["noisy"] and steady["half_width_pct"] < 2
    assert merge_trials([trial(1.4)])["noisy"]                      # one trial: no interval


def test_a_speedup_is_paired_trial_by_trial():
    """A machine-wide slow spell moves both rows; the pairs cancel it, the pooled ratio not."""
    fp32 = {"trial_p50": [2.2, 3.2, 2.2, 3.2, 2.2]}
    int8 = {"trial_p50": [1.1, 1.6, 1.1, 1.6, 1.1]}
    s = paired_speedup(fp32, int8)
    assert s["value"] == pytest.approx(2.0) and s["ci95"] == pytest.approx([2.0, 2.0])
    assert s["pairs"] == 5


@pytest.mark.parametrize("lost, gained, n, budget, expected", [
    (1, 0, 153, 0.5, decision.NOISE),      # the 2-class set's one image
    (3, 1, 341, 0.5, decision.NOISE),      # clothing's base QAT: 2 images over the budget
    (9, 2, 379, 0.5, decision.MISSED),     # a real loss (exact p = 0.033)
    (1, 1, 341, 0.5, decision.MET),
    (40, 0, 48, None, decision.MET),       # no budget
])
def test_the_int8_decision_mitigates_a_real_drop_and_not_an_image_of_noise(lost, gained, n,
                                                                          budget, expected):
    fp32 = [True] * lost + [False] * gained + [True] * (n - lost - gained)
    int8 = [False] * lost + [True] * gained + [True] * (n - lost - gained)
    evidence = intervals.paired(fp32, int8)
    assert (evidence["lost"], evidence["gained"], evidence["n"]) == (lost, gained, n)
    exact = stats.binomtest(lost, lost + gained, 0.5, alternative="greater").pvalue \
        if lost + gained else 1.0
    assert evidence["p_value"] == pytest.approx(exact)
    assert decision.judge(evidence, budget) == expected
    assert evidence["resolvable_points"] >= 100 * 5 / n - 1e-9     # 5 net images at the least
    text = decision.evidence_text({"paired": evidence})
    assert f"lost {lost}, gained {gained} of {n}" in text and "resolves" in text


class _Build:
    build, runtime, latency_budget_ms, min_top1 = "b", "rt", 10.0, 0.8


@pytest.mark.parametrize("ci, outcome", [([8.0, 9.0], "pass"), ([11.0, 12.0], "fail"),
                                         ([9.0, 11.0], "inconclusive"), (None, "inconclusive")])
def test_a_latency_budget_is_judged_on_the_interval(ci, outcome):
    row = {"build": "b", "runtime": "rt", "status": "ok",
           "latency_ms": {"p50": 9.5 if ci is None else sum(ci) / 2, "p50_ci95": ci},
           "top1": 0.95, "top1_record": intervals.top1(95, 100)}
    target = type("T", (), {"builds": [_Build()], "left_out": []})()
    check = verdict.verdict([row], target)["checks"][0]
    assert check["outcome"] == outcome and check["passed"] == (outcome == "pass")
    assert verdict.verdict([row], target, allow_inconclusive=True)["passed"] == \
        (outcome != "fail")
    small = {**row, "latency_ms": {"p50": 5.0, "p50_ci95": [4.9, 5.1]},
             "top1_record": intervals.top1(9, 10)}                 # 0.9 of 10 straddles 0.8
    assert verdict.verdict([small], target)["checks"][0]["outcome"] == "inconclusive"
    failed = verdict.verdict([small], target, export_failures=["int8 loses 3.0 points"])
    assert not failed["passed"] and failed["checks"][0]["build"] == "export"


@pytest.fixture(scope="module")
def adaptive(exported, tmp_path_factory):
    """The tiny run's bench as a user runs it: default (adaptive) trials, a short budget."""
    run, _ = exported
    out = tmp_path_factory.mktemp("adaptive")
    return session.benchmark(run, runtimes="onnxruntime,litert", warmup=1, iters=20,
                             time_budget=0, out=out), out


def test_every_row_carries_intervals_conditions_and_end_to_end_latency(adaptive):
    report, out = adaptive
    for r in report["results"]:
        lat = r["latency_ms"]
        assert lat["trials"] == MIN_TRIALS == len(lat["trial_p50"])     # budget 0: the minimum
        assert lat["p50_ci95"][0] <= lat["p50"] <= lat["p50_ci95"][1]
        assert lat["half_width_pct"] > 0 and isinstance(lat["noisy"], bool)
        assert r["top1_record"]["n"] == r["n"] == 20
        c = r["conditions_summary"]
        assert c["trials"] == MIN_TRIALS and c["probe_us"][0] > 0
        assert c["loadavg_1min"] is not None and c["others_cpu_pct"] is not None
        assert len(r["trial_conditions"]) == MIN_TRIALS
        e2e = r["end_to_end_ms"]                  # decode + resize + normalize + infer, files
        assert e2e["p50"] > lat["p50"] * 0.5 and e2e["trials"] == MIN_TRIALS
        assert 0 < e2e["preprocess_p50"] < e2e["p50"]
    paired = [r for r in report["results"] if r.get("int8_speedup_paired")]
    assert paired and all(p["int8_speedup_paired"]["pairs"] == MIN_TRIALS for p in paired)
    assert "after 5 rounds" in report["trials_stopped"]                # and why
    text = (out / "report.md").read_text()
    assert "## Conditions" in text and "## Flip audit" in text and "+-%" in text
    assert f"trials: {report['trials_stopped']}" in text


def test_the_flip_audit_names_every_image_that_changes(exported, adaptive):
    run, _ = exported
    report, out = adaptive
    flips = json.loads((out / "report.json").read_text())["flips"]
    data = np.load(run / "export" / "tflite-int8" / "eval.npz")
    row = next(r for r in report["results"] if r["build"] == "tflite-int8")
    changed = np.flatnonzero(np.array(row["predictions"]) != data["fp32"])
    listed = flips["vs_fp32"]["tflite-int8 (litert)"]
    assert [f["index"] for f in listed] == changed.tolist()
    for f in listed:
        assert f["image"] == str(data["names"][f["index"]]) and "fp32_margin" in f
    assert set(flips["vs_fp32"]) >= {"onnx-int8 (onnxruntime)", "tflite-int8 (litert)"}


def test_sustained_runs_one_build_and_draws_its_plot(exported, tmp_path):
    run, _ = exported
    bundle = run / "export" / "tflite-int8"
    report = session.benchmark(bundle, runtimes="litert", sustained=2.0, warmup=1, iters=5,
                               out=tmp_path / "s")
    row = report["results"][0]
    assert len(row["sustained"]) == 12 and all(w["runs"] > 0 for w in row["sustained"])
    assert (tmp_path / "s" / "sustained.png").stat().st_size > 1000
    assert "## Sustained" in (tmp_path / "s" / "report.md").read_text()
    with pytest.raises(ConfigError, match="--sustained times one build"):
        session.benchmark(run, sustained=2.0, out=tmp_path / "t")


def test_an_older_bundle_without_samples_is_measured_without_end_to_end(exported, tmp_path):
    """A bundle exported before end-to-end latency existed (no sample files, no fp32 in its
    evaluation set) is still measured: its e2e is absent, not invented."""
    run, _ = exported
    old = tmp_path / "old"
    shutil.copytree(run / "export" / "onnx-fp32", old)
    manifest = json.loads((old / "manifest.json").read_text())
    for name in manifest.pop("samples"):
        (old / name).unlink()
        manifest["sha256"].pop(name)
    (old / "manifest.json").write_text(json.dumps(manifest))
    assert cli.main(["bench", str(old), "--runtimes", "onnxruntime", "--trials", "2",
                     "--iters", "3", "--out", str(tmp_path / "b")]) == 0
    row = json.loads((tmp_path / "b" / "report.json").read_text())["results"][0]
    assert row["status"] == "ok" and row["end_to_end_ms"] is None


def test_clocks_temperatures_and_throttling_are_read_as_a_board_writes_them(tmp_path,
                                                                             monkeypatch):
    """The sysfs files of a Raspberry Pi 5 (cpufreq in kHz, thermal zones in millidegrees) and
    its `vcgencmd get_throttled` line, laid out as the kernel and the firmware tool give them:
    this VM has neither, so the reader is checked on their formats."""
    import os
    import sys
    from edgetl import bundle_runner
    sysfs = tmp_path / "sys"
    for cpu, khz in ((0, "2400000"), (1, "1500000")):
        freq = sysfs / "devices" / "system" / "cpu" / f"cpu{cpu}" / "cpufreq"
        freq.mkdir(parents=True)
        (freq / "scaling_cur_freq").write_text(khz + "\n")
        (freq / "scaling_governor").write_text("ondemand\n")
    zone = sysfs / "class" / "thermal" / "thermal_zone0"
    zone.mkdir(parents=True)
    (zone / "type").write_text("cpu-thermal\n")
    (zone / "temp").write_text("61850\n")
    (sysfs / "class" / "thermal" / "cooling_device0").mkdir()          # no temp: skipped
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "vcgencmd").write_text(f"#!{sys.executable}\nprint('throttled=0x50005')\n")
    (tools / "vcgencmd").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tools}{os.pathsep}{os.environ['PATH']}")
    state = bundle_runner.device_state([0, 1], sysfs=str(sysfs))
    assert state["cpu_mhz"] == [2400.0, 1500.0] and state["governor"] == "ondemand"
    assert state["temperatures_c"] == {"cpu-thermal": 61.85}
    assert state["throttled"] == "throttled=0x50005" and len(state["loadavg"]) == 3
    summary = summarise_conditions([{**state, "probe_us_before": 60.0, "probe_us_after": 66.0}])
    assert summary["cpu_mhz"] == [1500.0, 2400.0] and summary["temperature_c_max"] == 61.85
    assert summary["throttled"] == ["throttled=0x50005"]
    assert summary["probe_drift_pct"] == pytest.approx(10.0)


def test_a_bench_says_whether_the_machine_changed_since_the_last_report(exported, adaptive,
                                                                        tmp_path):
    """Two benches that disagree: the report compares its speed probe with the one it
    replaces, so a user can tell a slower machine from a slower build."""
    run, _ = exported
    report, out = adaptive
    shutil.copytree(out, tmp_path / "b")
    again = session.benchmark(run, runtimes="litert", trials=2, iters=5, warmup=1,
                              out=tmp_path / "b")
    assert again["machine"]["speed_probe_us"] > 0
    assert again["speed_vs_previous"]["previous_recorded"] == report["recorded"]
    first = report["machine"]["speed_probe_us"]
    assert again["speed_vs_previous"]["pct"] == pytest.approx(
        (again["machine"]["speed_probe_us"] / first - 1) * 100)
    assert "against the previous report" in (tmp_path / "b" / "report.md").read_text()
