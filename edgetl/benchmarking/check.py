"""`edgetl device check DEVICE`: what a device lacks for the builds it should run, found in
seconds before a long run (and by `edgetl run` before it trains): the device answers, its
Python and numpy, each runtime the builds need, `timeout`, a CUDA GPU where a runtime needs
one. One line per check with the fix."""
from ..bundle_runner import RUNTIMES
from ..core.errors import DeviceError
from .devices import parse_device
from .options import DeviceSettings
from .targets import load_target


def device_check(device=None, target=None, python=None, ssh_config=None,
                 timeout: float = 60.0) -> dict:
    """check() of DEVICE (default: the target's) for the runtimes the target's builds need
    (its optional builds aside); without a target, any runtime will do."""
    t = load_target(target) if target else None
    dev = parse_device(device or (t.device if t else "local"))
    py = python or (t.python if t and dev.uses_profile_python else None)
    how = DeviceSettings(timeout, None, py, ssh_config, None, (), t.emulated_cpu if t else "")
    wanted = sorted({b.runtime for b in t.builds if not b.optional}) if t else []
    result = check(dev, how, wanted)
    if not result["probe"] and t and not device:
        result["checks"][0]["fix"] = (f"the profile {t.name} names {t.device} as an example: "
                                      "give yours with --device")
    return result

# runtime -> how to get it on a device
INSTALL = {"tflite-runtime": "pip install 'numpy<2' tflite-runtime (in a venv on Pi OS)",
           "litert": "pip install ai-edge-litert",
           "onnxruntime": "pip install onnxruntime",
           "onnxruntime-cuda": "pip install onnxruntime-gpu (with CUDA)",
           "onnxruntime-tensorrt": "an onnxruntime built with TensorRT (JetPack: NVIDIA's wheel)",
           "tensorrt": "JetPack: sudo apt install python3-libnvinfer python3-numpy",
           "executorch": "pip install executorch"}


def check(device, how, runtimes: list) -> dict:
    """{"device", "ready", "checks": [{"what", "ok", "detail", "fix"}], "probe"} for a Device
    that should run `runtimes` (empty: any one runtime will do)."""
    try:
        found = device.probe(how, runtimes)
    except DeviceError as e:
        return {"device": str(device), "ready": False, "probe": None,
                "checks": [_line("device answers", False, str(e), "")]}
    have = found["runtimes"]
    checks = [_line("device answers", True, f"{found.get('machine')} "
                    f"{found.get('hostname', '')}".strip(), "")]
    if found.get("python"):
        checks.append(_line("Python", True, found["python"], ""))
        checks.append(_line("numpy", bool(found.get("numpy")), found.get("numpy") or "missing",
                            "pip install 'numpy<2'"))
    wanted = runtimes or [r for r, v in have.items() if v] or ["any runtime"]
    for name in wanted:
        version = have.get(name)
        fix = (found.get("install") or {}).get(name) or INSTALL.get(name) or \
            f"install one of {', '.join(RUNTIMES)}"
        checks.append(_line(f"runtime {name}", bool(version), version or "not installed", fix))
    if found.get("timeout") is not None:
        checks.append(_line("timeout", True, "present" if found["timeout"] else
                            "absent: the runner is bounded by edgetl's watchdog only", ""))
    if any(RUNTIMES.get(r) and RUNTIMES[r].cuda for r in wanted):
        checks.append(_line("CUDA GPU", found.get("cuda_devices", 0) > 0,
                            f"{found.get('cuda_devices', 0)} device(s)",
                            "a GPU with its driver and libcudart (JetPack on a Jetson)"))
    return {"device": str(device), "ready": all(c["ok"] for c in checks), "checks": checks,
            "probe": found}


def _line(what, ok, detail, fix) -> dict:
    return {"what": what, "ok": bool(ok), "detail": detail, "fix": "" if ok else fix}


def check_text(result: dict) -> str:
    lines = [f"{result['device']}: {'ready' if result['ready'] else 'NOT ready'}"]
    for c in result["checks"]:
        fix = f"  -> {c['fix']}" if c["fix"] else ""
        lines.append(f"  {'ok ' if c['ok'] else 'MISSING'} {c['what']}: {c['detail']}{fix}")
    return "\n".join(lines)
