"""An emulated ARM device: a Debian 12 arm64 userland (the base of Raspberry Pi OS) with Python
and the runtimes' aarch64 wheels, run by qemu-user on this machine. Bundles run there on ARM
kernels (NEON, dot-product int8, ARM rounding), so accuracy and agreement are the device's own;
latency under emulation says nothing about the board and is never reported.

Built once per folder (default ~/.cache/edgetl/emulated-arm64) and reused; `python` in that
folder is the launcher, usable as an SSH device's Python too.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from ..core.errors import ConfigError, DeviceError
from ..core.files import atomic_write
from .devices import RUNNER, Device, run_process, runner_args, runner_result, thread_env

SUITE = "bookworm"
QEMU = "qemu-aarch64-static"
WHEELS = {"tflite-runtime": ["tflite-runtime==2.14.0"], "litert": ["ai-edge-litert"],
          "onnxruntime": ["onnxruntime<1.28"]}   # 1.28+ crash at load under qemu 7.2
# Not ExecuTorch: its Python runtime imports torch, and PyPI's aarch64 torch 2.14.1 is the CUDA
# build (it will not import without libcudart and cuBLAS, gigabytes); the CPU-only aarch64
# wheels live on download.pytorch.org, which edgetl's environment cannot reach. An emulated
# device therefore takes no ExecuTorch build.
NUMPY = "numpy<2"              # what tflite-runtime 2.14 (most Pis and phones) was built for
PLATFORMS = ["manylinux_2_34_aarch64", "manylinux_2_28_aarch64", "manylinux_2_27_aarch64",
             "manylinux_2_17_aarch64", "manylinux2014_aarch64"]
APT_HINT = "sudo apt-get install qemu-user-static debootstrap"
STATE = "edgetl-emulator.json"  # what was built; also the mark of a folder edgetl owns
DEFAULT_CPU = "cortex-a76"      # the Raspberry Pi 5's core: NEON and dot-product, no SVE; qemu's
                                # default 'max' offers SVE and more, so libraries would pick
                                # kernels the board never runs (and that qemu emulates slowly)


def default_dir(arch: str = "arm64") -> Path:
    """EDGETL_EMULATED_DIR, else ~/.cache/edgetl/emulated-ARCH."""
    env = os.environ.get("EDGETL_EMULATED_DIR")
    return Path(env) if env else Path.home() / ".cache" / "edgetl" / f"emulated-{arch}"


def build(folder=None, runtimes=("tflite-runtime",), arch: str = "arm64", log=print) -> Path:
    """The userland in `folder` with the runtimes' wheels (each step skipped when done);
    returns the launcher's path."""
    if arch != "arm64":
        raise ConfigError(f"emulated device '{arch}': only arm64 is available")
    bad = [r for r in runtimes if r not in WHEELS]
    if bad:
        raise ConfigError(f"unknown runtime '{bad[0]}' for the emulated device: choose from "
                          f"{', '.join(WHEELS)}")
    for tool in (QEMU, "debootstrap", "dpkg-deb"):
        if not shutil.which(tool) and not Path("/usr/sbin", tool).exists():
            raise ConfigError(f"{tool} not found: {APT_HINT}")
    folder = Path(folder or default_dir(arch)).resolve()
    _claim(folder)
    state = _state(folder)
    if not state.get("userland"):
        _userland(folder, log)
        state["userland"] = SUITE
        _save(folder, state)
    wanted = sorted(set(state.get("runtimes", [])) | set(runtimes))
    specs = [NUMPY] + [w for r in wanted for w in WHEELS[r]]
    if specs != state.get("wheels"):
        _wheels(folder, wanted, log)                  # all at once: one numpy fits them all
        state.update(runtimes=wanted, wheels=specs)
        _save(folder, state)
    return _launcher(folder)


def _claim(folder: Path) -> None:
    """Build only into a folder edgetl owns: absent or empty (then marked), or marked before.
    Anything else is the user's, and nothing in it is touched."""
    marker = folder / STATE
    if folder.is_dir() and any(folder.iterdir()) and not marker.is_file():
        raise ConfigError(f"--dir {folder} holds files edgetl did not write (no {STATE}): "
                          "choose an empty or new folder for the emulated device")
    _check_owner(folder) if folder.exists() else folder.mkdir(parents=True)
    if not marker.is_file():
        _save(folder, {})


def _check_owner(path: Path) -> None:
    """Run nothing that another user could have written (a shared cache folder)."""
    st = path.stat()
    if st.st_uid != os.getuid() or st.st_mode & 0o022:
        raise DeviceError(f"{path} belongs to another user or others may write to it: edgetl "
                          "runs nothing from it; build the emulated device in a folder of "
                          "your own (--dir)")


def _state(folder: Path) -> dict:
    try:
        return json.loads((folder / STATE).read_text())
    except (OSError, ValueError):
        return {}


def _save(folder: Path, state: dict) -> None:
    atomic_write(folder / STATE, lambda p: p.write_text(json.dumps(state, indent=2) + "\n"))


def _mirror() -> str:
    """The Debian archive this machine's apt already uses."""
    for path in [Path("/etc/apt/sources.list")] + sorted(Path("/etc/apt/sources.list.d")
                                                           .glob("*.sources")):
        try:
            text = path.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            words = line.split()
            uris = words[1:] if words[:1] == ["URIs:"] else \
                [w for w in words if w.startswith("http")] if words[:1] == ["deb"] else []
            for uri in uris:
                if uri.rstrip("/").endswith("/debian"):
                    return uri
    return "http://deb.debian.org/debian"


def _userland(folder: Path, log) -> None:
    """debootstrap's first stage (downloads, no emulation), then every package unpacked."""
    root = folder / "root"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    log(f"downloading a Debian {SUITE} arm64 userland into {root} ...")
    cmd = ["debootstrap", "--foreign", "--arch=arm64", "--variant=minbase",
           "--include=python3", SUITE, str(root), _mirror()]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        tail = (res.stderr.strip() or res.stdout.strip()).splitlines()[-1:] or ["failed"]
        raise DeviceError(f"debootstrap failed ({tail[0]}): check the network and that this "
                          "runs as root (or under fakeroot)")
    debs = sorted((root / "var" / "cache" / "apt" / "archives").glob("*.deb"))
    for deb in debs:
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True,
                       capture_output=True)
    if not (root / "usr" / "bin" / "python3").exists():
        raise DeviceError(f"{root}: the userland has no python3 after unpacking {len(debs)} "
                          "packages; remove the folder and try again")


def _wheels(folder: Path, runtimes: list, log) -> None:
    """The runtimes' aarch64 wheels (and numpy) into a fresh site folder, swapped in whole."""
    log(f"installing {', '.join(runtimes)} (aarch64 wheels) ...")
    site, new = folder / "site", folder / "site.new"
    shutil.rmtree(new, ignore_errors=True)
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--target", str(new),
           "--python-version", "3.11", "--implementation", "cp", "--only-binary=:all:"]
    for p in PLATFORMS:
        cmd += ["--platform", p]
    for runtime in runtimes:
        res = subprocess.run(cmd + [NUMPY] + WHEELS[runtime] + ["--dry-run"], capture_output=True,
                             text=True)
        if res.returncode != 0:
            why = [ln for ln in res.stderr.splitlines() if "ERROR" in ln][:1] or ["pip failed"]
            raise DeviceError(f"runtime {runtime} has no aarch64 wheel for Python 3.11 that pip "
                              f"could install ({why[0].strip()}); pick another runtime")
    res = subprocess.run(cmd + [NUMPY] + [w for r in runtimes for w in WHEELS[r]],
                         capture_output=True, text=True)
    if res.returncode != 0:
        raise DeviceError(f"pip could not install {', '.join(runtimes)} for aarch64 together: "
                          f"{(res.stderr.strip().splitlines() or ['failed'])[-1]}")
    shutil.rmtree(site, ignore_errors=True)
    os.replace(new, site)


def _launcher(folder: Path) -> Path:
    qemu = shutil.which(QEMU) or QEMU
    path = folder / "python"
    root = folder / "root"
    text = ("#!/bin/sh\n# Python 3 of an emulated arm64 Debian userland (edgetl)\n"
            f"export PYTHONPATH='{folder / 'site'}' EDGETL_EMULATED=1\n"
            f"export QEMU_CPU=\"${{QEMU_CPU:-{DEFAULT_CPU}}}\"\n"
            f"exec '{qemu}' -L '{root}' '{root}/usr/bin/python3' \"$@\"\n")
    atomic_write(path, lambda p: p.write_text(text))
    path.chmod(0o755)
    return path


def launcher(device: Device) -> Path:
    """The launcher of a built emulated device, or one line saying how to build it."""
    path = default_dir(device.host) / "python"
    if not path.exists():
        raise DeviceError(f"{device}: not built yet: run 'edgetl device emulate {device.host}' "
                          "first")
    for owned in (path, path.parent):
        _check_owner(owned)
    return path


def run_emulated(device: Device, folder: Path, args: list, timeout: float, threads=None,
                 cpu=None) -> dict:
    """The bundle's runner under the emulated userland's Python (this edgetl's runner, as with
    every other device); its JSON result, marked emulated."""
    cmd = [str(launcher(device)), str(RUNNER), "--bundle", str(Path(folder).resolve()), *args]
    proc = run_process(cmd, timeout, f"{device}", cwd=folder,
                       env={**os.environ, **thread_env(threads),
                            **({"QEMU_CPU": cpu} if cpu else {})},
                       hung=f"runner did not finish within {timeout:g} s under emulation; raise "
                            "--timeout")
    return {**runner_result(proc, f"{device}"), "emulated": True}


class EmulatedDevice(Device):
    """An ARM userland under qemu on this machine: the device's kernels, so accuracy is its
    own; its timings are not (never reported)."""
    measures_latency = False

    def accepts(self, fmt) -> bool:
        return not fmt.needs_gpu and any(rt in WHEELS for rt in fmt.runtimes)

    def run(self, folder, manifest, trial, how) -> dict:
        return self.run_runner(folder, runner_args(trial, how.threads), how)

    def run_runner(self, folder, args, how) -> dict:
        return run_emulated(self, folder, args, how.timeout, how.threads, how.emulated_cpu)

    def machine(self, measured, here) -> dict:
        return {"device": str(self), "processor": f"{(measured or {}).get('machine', '')} "
                "under qemu on this machine", **(measured or {}), "host": here}
