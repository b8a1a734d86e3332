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
            "bundle_runner.py": "--json, a file the user names"}
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
