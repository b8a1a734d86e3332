"""Files: content hashes, atomic writes (no reader ever sees half a file), JSON."""
import hashlib
import json
import os
from pathlib import Path


def sha256(path, chunk=1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def atomic_write(path, write) -> None:
    """Call write(tmp_path), flush it to disk and move it into place: after a crash or an
    interrupt `path` holds either the old file or the whole new one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path, obj) -> None:
    atomic_write(path, lambda p: Path(p).write_text(json.dumps(obj, indent=2) + "\n"))


def read_json(path) -> dict:
    """A JSON file edgetl wrote; a damaged one is one clear error naming it."""
    from .errors import RunError
    try:
        return json.loads(Path(path).read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RunError(f"{path} is damaged ({e.__class__.__name__}: {e}): restore it, or run "
                       "the stage that writes it again (--overwrite)") from None
