"""The README's commands: every `edgetl ...` line of its bash blocks parses with the real command
line (an option renamed or removed fails here), and those that need no hardware and no data of
yours run for real against the tests' exported run."""
import re
import shlex
from pathlib import Path

from conftest import cli
from edgetl.cli import build_parser

README = Path(__file__).resolve().parent.parent / "README.md"
# what runs for real: the README's words for a user's run and photos -> the tests' own
RUNNABLE = ("edgetl predict", "edgetl compare", "edgetl targets", "edgetl --version")


def readme_commands() -> list:
    """Every edgetl command line of the README's bash blocks (continuations joined, comments
    and the synopsis brackets' alternatives left as written)."""
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), re.S)
    lines = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            line = re.sub(r"^\.venv/bin/", "", line)
            if line.startswith("edgetl ") and "[" not in line and "|" not in line:
                lines.append(line)
    return lines


def test_every_readme_command_parses():
    commands = readme_commands()
    assert len(commands) >= 10, commands
    parser = build_parser()
    for line in commands:
        try:
            parser.parse_args(shlex.split(line)[1:])
        except SystemExit as e:
            if e.code == 0:                 # --version, --help: printed, then exit 0
                continue
            raise AssertionError(f"README: {line!r} does not parse (exit {e.code})") from None


def test_the_readme_commands_that_need_no_hardware_run(exported, tmp_path):
    run, _ = exported
    report = run / "bench" / "report.json"
    rows = {r["build"] for r in __import__("json").loads(report.read_text())["results"]} \
        if report.is_file() else set()
    if not {"tflite-fp32", "tflite-int8"} <= rows:       # the page test's bench, else one here
        from edgetl.benchmarking import session
        session.benchmark(run, runtimes="litert", warmup=1, iters=5, trials=2)
    test_folder = Path(__import__("json").loads((run / "train" / "split.json").read_text())
                       ["root"]) / "test"
    ran = 0
    for line in readme_commands():
        if not line.startswith(RUNNABLE):
            continue
        line = line.replace("runs/plants", str(run)).replace("photos/test", str(test_folder))
        res = cli(*shlex.split(line)[1:])
        assert res.returncode == 0, (line, res.stderr[-2000:])
        ran += 1
    assert ran >= 2
