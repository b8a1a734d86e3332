"""The package's shape is checked, not described: imports flow one way through the stages
(import-linter contracts in pyproject.toml), and no module grows past what a reader can hold."""
import shutil
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "edgetl"
STANDALONE = {"bundle_runner.py"}          # ships alone as run.py: one file by design


def test_imports_flow_down_the_stages():
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or \
        shutil.which("lint-imports")
    assert lint, "import-linter is a test dependency: pip install -e '.[test]'"
    res = subprocess.run([lint, "--no-cache"], cwd=PACKAGE.parent, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:]
    assert "0 broken" in res.stdout


# What ships to devices runs on their Pythons, edgetl itself needs 3.11: JetPack 5 has 3.8,
# JetPack 6 3.10, Raspberry Pi OS Bookworm 3.11. vermin reads the syntax and library calls.
DEVICE_PYTHON = "3.8"
SHIPPED = ("bundle_runner.py", "exporting/build_engine.py")


def test_what_ships_to_devices_runs_on_python_3_8():
    vermin = shutil.which("vermin", path=str(Path(sys.executable).parent)) or \
        shutil.which("vermin")
    assert vermin, "vermin is a test dependency: pip install -e '.[test]'"
    res = subprocess.run([vermin, "--no-tips", "--eval-annotations", "--feature",
                          "union-types", f"-t={DEVICE_PYTHON}-", "--violations",
                          *[str(PACKAGE / f) for f in SHIPPED]],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-1000:]


def test_no_module_is_longer_than_a_reader_can_hold():
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py")
            if p.name not in STANDALONE and (n := len(p.read_text().splitlines())) > 300}
    assert not long, long


# Writers that may write a file in place, each for its reason; every other file edgetl writes
# goes through core.files.atomic_write (the whole new file or the old one, never half).
IN_PLACE = {"exporting/bundle.py": "into the export's work folder, which is swapped in whole",
            "exporting/tensorrt.py": "into the export's work folder, which is swapped in whole",
            "exporting/build_engine.py": "to a temporary name, then renamed",
            "training/digits.py": "the demo's data set, written once",
            "cli.py": "the crash log, a new file of a unique name",
            "bundle_runner.py": "--json, a file the user names",
            "page.py": "thumbnails saved into memory buffers; the page through atomic_write"}
WRITES = ("write_text(", "write_bytes(", "savez", '"w")', '"wb")', ".save(", "savefig(")


def test_every_file_is_written_atomically_but_where_a_reason_says_otherwise():
    direct = set()
    for path in PACKAGE.rglob("*.py"):
        name = str(path.relative_to(PACKAGE))
        if name == "core/files.py":
            continue
        for line in path.read_text().splitlines():
            if any(w in line for w in WRITES) and "atomic_write(" not in line and \
                    "tarfile.open" not in line:
                direct.add(name)
    assert direct <= set(IN_PLACE), direct - set(IN_PLACE)


def test_an_interrupted_write_leaves_the_old_file_whole(tmp_path, monkeypatch):
    import os
    import pytest
    from edgetl.core.files import write_json
    path = tmp_path / "report.json"
    write_json(path, {"old": True})

    def stopped(fd):
        raise KeyboardInterrupt
    monkeypatch.setattr(os, "fsync", stopped)
    with pytest.raises(KeyboardInterrupt):
        write_json(path, {"new": True})
    assert path.read_text() == '{\n  "old": true\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_every_test_the_readme_names_exists():
    import re
    readme = (PACKAGE.parent / "README.md").read_text()
    named = set(re.findall(r"`(test_[a-z0-9_]+)`", readme))
    defined = {m for p in (PACKAGE.parent / "tests").glob("test_*.py")
               for m in re.findall(r"^def (test_[a-z0-9_]+)", p.read_text(), re.M)}
    assert named and not named - defined, sorted(named - defined)


TABLES = {"exporting/formats.py", "bundle_runner.py"}   # the format table and the runner's


def test_formats_are_told_apart_only_in_their_tables():
    import re
    names = "|".join(__import__("edgetl.exporting.formats", fromlist=["FORMATS"]).FORMATS)
    quoted = rf"""["']({names})["']"""
    compare = re.compile(rf"[=!]=\s*{quoted}|{quoted}\s*[=!]=|\bin\s*\(\s*{quoted}")
    found = [f"{p.relative_to(PACKAGE)}:{i}" for p in PACKAGE.rglob("*.py")
             if str(p.relative_to(PACKAGE)) not in TABLES
             for i, line in enumerate(p.read_text().splitlines(), 1) if compare.search(line)]
    assert not found, found


def test_no_function_takes_more_than_eight_parameters():
    import ast
    wide = []
    for p in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                a = node.args
                names = [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs]
                n = len(names) - (names[:1] in (["self"], ["cls"]))
                if n > 8:
                    wide.append(f"{p.relative_to(PACKAGE)}:{node.name} ({n})")
    assert not wide, wide


def test_devices_are_told_apart_only_by_their_classes():
    hits = [f"{p.relative_to(PACKAGE)}:{i}" for p in PACKAGE.rglob("*.py")
            for i, line in enumerate(p.read_text().splitlines(), 1) if ".kind ==" in line
            or ".kind !=" in line or "device.kind" in line]
    assert not hits, hits


def test_the_main_job_takes_every_option_and_help_comes_from_the_options():
    from dataclasses import fields
    from edgetl import cli
    from edgetl.benchmarking.options import BenchOptions
    from edgetl.exporting.options import MITIGATION, ExportOptions
    from edgetl.training.config import TrainConfig
    parser = cli.build_parser()
    run = next(a for a in parser._subparsers._group_actions[0].choices.values()
               if a.prog.endswith(" run"))
    dests = {a.dest for a in run._actions}
    wanted = {cli.RUN_RENAMES.get(f.name, f.name) for f in fields(TrainConfig)} | \
        {f.name for f in fields(ExportOptions)} | \
        {f.name for f in fields(BenchOptions)} - {"target", "out"}
    assert wanted <= dests, sorted(wanted - dests)
    mitigate = next(a for a in run._actions if a.dest == "mitigate")
    assert mitigate.help.startswith(MITIGATION)
    # the order the help names is the ladder's order (tests/test_int8.py runs the ladder)
    assert MITIGATION.index("float blocks") < MITIGATION.index("more epoch of QAT")
    for action in run._actions:
        if action.dest not in ("help", "data"):
            assert action.help and ("default" in action.help or action.required or
                                    action.dest in ("config", "overwrite")), action.dest


def test_every_benchmark_script_has_a_main_and_still_imports():
    import importlib.util
    bench = PACKAGE.parent / "benchmarks"
    sys.path.insert(0, str(bench))
    try:
        for p in sorted(bench.glob("*.py")):
            if p.name == "common.py":
                continue
            spec = importlib.util.spec_from_file_location(f"benchmark_{p.stem}", p)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)                  # imports only: runs nothing
            assert callable(getattr(module, "main", None)), f"{p.name} has no main()"
    finally:
        sys.path.remove(str(bench))
