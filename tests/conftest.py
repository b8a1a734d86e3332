"""Small real images on disk: classes that differ in colour and shape, learnable in seconds;
a tiny exported run shared by the export and bench tests; a Pi-like virtual environment."""
import getpass
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import time
import venv
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

# Two pytest-xdist workers share the CPU, so the machine is never idle and every trial of a
# bench would wait its full --wait-idle first; what the bench tests assert is not that wait
# (tests/test_uncertainty.py times it on its own).
os.environ.setdefault("EDGETL_WAIT_IDLE", "0")
# Each worker computes on one thread (and so do the commands it starts): two workers of two
# threads each on two cores spent a quarter of their time contending (the Lite1 and Lite2
# parity tests side by side: 228 s, against 170 s at one thread each). A bench still runs each
# build at its profile's thread count (the runner sets it for the build's process).
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
COLOURS = [(220, 40, 40), (40, 60, 220), (40, 180, 60), (230, 200, 30)]
FAST = dict(model="efficientnet_lite0", img_size=32, epochs=3, warmup_epochs=1, cache_views=2,
            batch_size=16, patience=0, workers=1)


def draw(label: int, rng: random.Random, size: int = 40) -> Image.Image:
    bg = tuple(rng.randint(200, 255) for _ in range(3))
    img = Image.new("RGB", (size, size), bg)
    d = ImageDraw.Draw(img)
    x, y = rng.randint(2, 10), rng.randint(2, 10)
    w = rng.randint(18, 26)
    colour = tuple(max(0, min(255, c + rng.randint(-20, 20))) for c in COLOURS[label])
    (d.ellipse if label % 2 else d.rectangle)([x, y, x + w, y + w], fill=colour)
    return img


def make_folder(root: Path, classes=2, per_class=12, splits=("train", "validation", "test"),
                seed=0) -> Path:
    """root/<split>/<class>/<i>.jpg (or root/<class>/ when splits is empty)."""
    rng = random.Random(seed)
    for split in splits or ("",):
        for c in range(classes):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                draw(c, rng).save(folder / f"{i:03d}.jpg", quality=90)
    return root


# The fast tier (`pytest -m "not slow"`) leaves out what needs minutes: the shared exported
# run and the device fixtures (their setup alone takes a minute or more), the emulated devices,
# and the tests marked slow one by one (a whole pipeline, a resumed run).
SLOW_FIXTURES = {"exported", "every_format", "pi_like_venv", "sshd", "arm64", "small_run"}
SLOW_MODULES = {"test_emulated_arm.py", "test_emulated_cpu.py"}


# The suite runs on 2 pytest-xdist workers, a module to a worker (`--dist loadscope` in
# pyproject.toml: a module's fixtures are built once). The longest modules go first, so that
# neither worker is left with a long one at the end (pytest --durations on a 2-core VM).
LONGEST_FIRST = ("test_train.py", "test_models.py", "test_int8.py", "test_run.py",
                 "test_executorch.py", "test_bench.py", "test_emulated_arm.py")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())) or \
                item.path.name in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))     # stable: file order


def cli(*args, **kw) -> subprocess.CompletedProcess:
    """`edgetl ARGS...` in a fresh process, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "edgetl", *map(str, args)],
                          capture_output=True, text=True, timeout=600, **kw)


def one_line(res, code=2) -> str:
    """The single stderr line a failed command must end with (no traceback)."""
    lines = res.stderr.strip().splitlines()
    assert res.returncode == code, res.stderr[-2000:]
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr[-2000:]
    return lines[0]


@pytest.fixture
def image_folder(tmp_path) -> Path:
    return make_folder(tmp_path / "data")


@pytest.fixture
def python():
    return sys.executable


def built_once(tmp_path_factory, name: str, build) -> Path:
    """`build(folder)` run once per test session, whatever the number of pytest-xdist workers
    (the first to arrive builds, under a file lock; the others wait, then use it)."""
    from filelock import FileLock
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent                       # the session's folder, above each worker's
    folder = base / f"shared-{name}"
    with FileLock(str(folder) + ".lock"):
        if not (folder / ".built").is_file():
            shutil.rmtree(folder, ignore_errors=True)
            build(folder)
            (folder / ".built").touch()
    return folder


# the shared exported run's training settings; fp32 steps give one model on every CPU
EXPORTED_TRAIN = {**FAST, "epochs": 15, "img_size": 48, "lr": 1e-2, "train_precision": "fp32"}


def _exported_run(root: Path) -> None:
    data = make_folder(root / "data", classes=3, per_class=16)
    run = root / "run"
    import edgetl
    edgetl.train(data, run, **EXPORTED_TRAIN)
    try:
        # no accuracy budget here (its 48 validation images make one image 2 points): the
        # builds stay all-int8 whatever this CPU's rounding; tests/test_int8.py covers budgets
        edgetl.export(run, qat_epochs=5.0, bundle_size=20, max_int8_drop=None)
    except edgetl.RunError as e:          # int8 parity miss: reported, manifest still written
        assert "parity below threshold" in str(e)


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """A tiny trained and exported run, built once; each worker gets its own copy to write in."""
    shared = built_once(tmp_path_factory, "export", _exported_run)
    root = tmp_path_factory.mktemp("export")
    for part in ("data", "run"):            # the run finds its data beside it, as trained
        shutil.copytree(shared / part, root / part)
    run = root / "run"
    return run, json.loads((run / "export" / "manifest.json").read_text())


def _pi_like(folder: Path) -> None:
    path = folder / "venv"
    venv.EnvBuilder(with_pip=True).create(path)
    res = subprocess.run([str(path / "bin" / "python"), "-m", "pip", "install", "-q", "numpy<2",
                          "tflite-runtime==2.14.0"], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]


@pytest.fixture(scope="session")
def pi_like_venv(tmp_path_factory):
    """A Raspberry Pi-like environment: numpy<2 and tflite-runtime 2.14 only (read only)."""
    return built_once(tmp_path_factory, "pi", _pi_like) / "venv" / "bin" / "python"


SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
# Under CI (or EDGETL_REQUIRE_DEVICE_TESTS=1) a device test group whose tools are missing fails
# the run: a green run must mean the SSH, ARM and emulated-CPU tests ran.
STRICT = os.environ.get("CI", "").lower() in ("1", "true") or \
    os.environ.get("EDGETL_REQUIRE_DEVICE_TESTS") == "1"


def tool(name: str):
    """A program's path: on PATH, or in /usr/sbin (where Debian puts sshd and debootstrap,
    and which a non-root PATH lacks); None when it is not installed."""
    found = shutil.which(name)
    return found or (f"/usr/sbin/{name}" if os.path.exists(f"/usr/sbin/{name}") else None)


def need_tools(group: str, *names: str) -> dict:
    """{name: path} of the tools a test group needs; a missing one skips the group, or fails
    it under CI (or EDGETL_REQUIRE_DEVICE_TESTS=1). Call at module level or in a fixture."""
    paths = {n: tool(n) for n in names}
    missing = [n for n, p in paths.items() if p is None]
    if missing:
        why = f"{group}: {', '.join(missing)} not installed (.ci/run installs them)"
        if STRICT:
            pytest.fail(why + "; CI (or EDGETL_REQUIRE_DEVICE_TESTS=1) requires this group",
                        pytrace=False)
        pytest.skip(why, allow_module_level=True)
    return paths


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


@pytest.fixture(scope="session")
def sshd(tmp_path_factory):
    need_tools("SSH device tests", "sshd", "ssh", "ssh-keygen")
    root = tmp_path_factory.mktemp("sshd")
    host, client, stranger = (_keygen(root / n) for n in ("host_key", "client", "stranger"))
    (root / "authorized_keys").write_text((root / "client.pub").read_text())
    port = free_port()
    (root / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host}\n"
        f"AuthorizedKeysFile {root / 'authorized_keys'}\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nPubkeyAuthentication yes\nStrictModes no\n"
        f"PidFile {root / 'sshd.pid'}\nUsePAM no\nPermitRootLogin prohibit-password\n")
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", exist_ok=True)
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(root / "sshd_config")],
                            stderr=open(root / "sshd.log", "w"))
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail("sshd did not start: " + (root / "sshd.log").read_text())
    (root / "known_hosts").write_text(f"[127.0.0.1]:{port} " + (root / "host_key.pub")
                                      .read_text())
    (root / "empty_known_hosts").write_text("")

    def config(key=client, known="known_hosts", name="ssh_config") -> str:
        path = root / name
        path.write_text(f"Host edge-device 127.0.0.1\n  HostName 127.0.0.1\n  Port {port}\n"
                        f"  User {getpass.getuser()}\n  IdentityFile {key}\n"
                        f"  IdentitiesOnly yes\n  UserKnownHostsFile {root / known}\n"
                        "  StrictHostKeyChecking yes\n")
        return str(path)
    yield {"port": port, "config": config, "stranger": stranger}
    proc.terminate()
    proc.wait(timeout=10)
