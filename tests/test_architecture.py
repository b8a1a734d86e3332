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
