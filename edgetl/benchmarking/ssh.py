"""SSH devices (Jetson, Raspberry Pi, an emulated ARM userland): the bundle streams as tar over
the one connection into a temporary folder, this edgetl's runner checks and runs it there under
the device's own Python and runtime, bounded on the device itself by `timeout` and by a watchdog
that stops it when the connection goes, and the JSON comes back."""
import io
import shlex
import tarfile
import time
from pathlib import Path

from ..core.errors import DeviceError
from .devices import RUNNER, Device, run_process, runner_args, runner_result, thread_env

KILL_GRACE = 5          # seconds between the device's TERM and KILL of a runner over time
SSH_ERRORS = [  # (stderr fragment, what it means and what to do)
    ("Host key verification failed", "unknown or changed host key: connect once with "
     "'ssh {host}' to check and accept it (or add it to known_hosts)"),
    ("No ED25519 host key is known", "unknown host key: connect once with 'ssh {host}'"),
    ("Permission denied", "authentication refused: install your public key on the device "
     "(ssh-copy-id {host}) or name the key in ~/.ssh/config"),
    ("Connection refused", "connection refused: is sshd running on the device, and the port "
     "right?"),
    ("Could not resolve hostname", "unknown host name: check the address"),
    ("timed out", "device unreachable (timed out): check the address and network"),
    ("No route to host", "device unreachable: check the address and network"),
]


def ssh_command(device: Device, remote_cmd: str, timeout: float, ssh_config=None) -> list:
    cmd = ["ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={max(1, min(int(timeout), 15))}"]
    cmd += ["-F", str(ssh_config)] if ssh_config else []
    cmd += ["-p", str(device.port)] if device.port else []
    return cmd + ["--", device.host, remote_cmd]


def _ssh_error(device, proc) -> DeviceError:
    text = proc.stderr.strip()
    for fragment, meaning in SSH_ERRORS:
        if fragment in text:
            return DeviceError(f"{device}: {meaning.format(host=device.host)}")
    return DeviceError(f"{device}: ssh failed: {(text.splitlines() or ['exit 255'])[-1]}")


def bundle_tar(folder: Path) -> bytes:
    """bundle/: the bundle's folder as it is (every file, so the device refuses what the
    manifest does not list); runner/run.py: this edgetl's runner, kept outside the bundle."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(folder, arcname="bundle")
        tar.add(RUNNER, arcname="runner/run.py")
    return buf.getvalue()


def remote_script(python: str, args: list, timeout: float, threads=None) -> str:
    """Unpack into a fresh folder, run the runner on the bundle bounded by `timeout` (TERM,
    then KILL) where the device has it, and by a watchdog that stops the runner once this side
    is gone (its heartbeat line fails to reach a closed connection: Ctrl-C, a lost link);
    remove the folder whatever happens."""
    env = " ".join(f"{k}={v}" for k, v in thread_env(threads).items())
    py = shlex.quote(python)
    bound = f"timeout -k {KILL_GRACE} {timeout:g}"
    watchdog = ("(trap '' PIPE; while kill -0 $r 2>/dev/null; do sleep 1; printf '\\n' "
                f"2>/dev/null || {{ kill -TERM $r; sleep {KILL_GRACE}; kill -KILL $r; break; }}; "
                "done) </dev/null & w=$!")
    return (f"command -v {py} >/dev/null || exit 127; d=$(mktemp -d) || exit 1; "
            "trap 'rm -rf \"$d\"' EXIT HUP INT TERM; tar -xf - -C \"$d\" || exit 1; "
            f"if command -v timeout >/dev/null; then b='{bound}'; else b=''; fi; "
            f"env {env} $b {py} \"$d/runner/run.py\" --bundle \"$d/bundle\" "
            f"{shlex.join(args)} </dev/null & r=$!; {watchdog}; wait $r; s=$?; "
            "kill $w 2>/dev/null; exit $s")


def run_ssh(device: Device, folder: Path, args: list, timeout: float, python="python3",
            ssh_config=None, threads=None) -> dict:
    """One run of the bundle's runner on the device; its JSON result."""
    cmd = ssh_command(device, remote_script(python, args, timeout, threads), timeout,
                      ssh_config)
    start = time.monotonic()
    # the local bound leaves the device's own bound time to act first
    proc = run_process(cmd, timeout + KILL_GRACE + 15, str(device), stdin=bundle_tar(folder))
    if proc.returncode == 255:
        raise _ssh_error(device, proc)
    if proc.returncode == 127:
        raise DeviceError(f"{device}: no '{python}' on the device; install Python 3 there or "
                          "set 'python' in the target profile")
    timed_out = time.monotonic() - start >= timeout
    if proc.returncode == 124 or (proc.returncode == 137 and timed_out):
        raise DeviceError(f"{device}: no answer within {timeout:g} s: the runner was stopped "
                          "on the device; raise --timeout or lower --iters")
    if proc.returncode == 137:
        raise DeviceError(f"{device}: the runner was killed on the device (signal 9) after "
                          f"{time.monotonic() - start:.0f} s, well within --timeout: most "
                          "likely out of memory; lower --batch or free memory there")
    return runner_result(proc, f"{device}")


class SSHDevice(Device):
    """A Jetson or a Raspberry Pi (or any Linux box) with Python and the runtimes."""
    uses_profile_python = True

    def run(self, folder, manifest, trial, how) -> dict:
        return self.run_runner(folder, runner_args(trial, how.threads), how)

    def run_runner(self, folder, args, how) -> dict:
        return run_ssh(self, folder, args, how.timeout, how.python or "python3", how.ssh_config,
                       how.threads)
