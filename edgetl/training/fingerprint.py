"""A data set's fingerprint: every sample's path (relative to the data root), label, size,
modification time and, where cheap (data up to 2 GB), content hash; and the classes. Kept in
the split record, it tells a changed data set from the one a run was trained on, and says what
changed. A file that was touched but not changed still counts as the same when it was hashed."""
import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..core.files import sha256

HASH_LIMIT = 2 << 30          # bytes of data up to which every file's content is hashed


def _stat(path: str) -> list:
    try:
        st = os.stat(path)
    except OSError:
        return [-1, -1]
    return [st.st_size, st.st_mtime_ns]


def _hash(path: str):
    try:
        return sha256(path)
    except OSError:
        return None


def fingerprint(splits) -> dict:
    samples = splits.all_samples()
    stats_ = [_stat(p) for p, _ in samples]
    hashed = sum(s for s, _ in stats_ if s > 0) <= HASH_LIMIT
    with ThreadPoolExecutor(8) as pool:
        hashes = list(pool.map(_hash, [p for p, _ in samples])) if hashed else \
            [None] * len(samples)
    files = {Path(p).relative_to(splits.root).as_posix(): [y, *st, h]
             for (p, y), st, h in zip(samples, stats_, hashes)}
    key = lambda e: [e[0], e[1], e[3] if hashed else e[2]]
    digest = hashlib.sha256(json.dumps([list(splits.classes), hashed, sorted(
        (k, key(e)) for k, e in files.items())]).encode())
    return {"classes": list(splits.classes), "digest": digest.hexdigest(), "hashed": hashed,
            "files": files}


def stats(samples) -> list:
    """[size, mtime] per sample: what the feature cache is keyed on besides the paths."""
    return [_stat(p) for p, _ in samples]


def _differs(a: list, b: list) -> bool:
    """Two entries [label, size, mtime, sha] of the same path describe different files."""
    if a[0] != b[0] or a[1] != b[1]:
        return True
    if a[3] is not None and b[3] is not None:
        return a[3] != b[3]
    return a[2] != b[2]


def changes(old: dict, new: dict) -> str:
    """'' when both fingerprints describe the same data, else what changed, in a few words."""
    if old.get("digest") == new["digest"]:
        return ""
    parts = []
    added = set(new["classes"]) - set(old["classes"])
    gone = set(old["classes"]) - set(new["classes"])
    if added:
        parts.append(f"class(es) added: {', '.join(sorted(added))}")
    if gone:
        parts.append(f"class(es) removed: {', '.join(sorted(gone))}")
    a, b = old["files"], new["files"]
    for what, names in (("added", sorted(set(b) - set(a))), ("removed", sorted(set(a) - set(b))),
                        ("changed", sorted(k for k in set(a) & set(b)
                                           if _differs(a[k], b[k])))):
        if names:
            parts.append(f"{len(names)} image(s) {what} (e.g. {names[0]})")
    return "; ".join(parts)


def changed_files(record: dict, root) -> list:
    """Recorded files that are now missing or different under `root` (content compared when
    the record holds hashes and only the time moved)."""
    out = []
    for rel, (label, size, mtime, digest) in record["files"].items():
        path = str(Path(root) / rel)
        now = _stat(path)
        if now[0] != size or (now[1] != mtime and (digest is None or _hash(path) != digest)):
            out.append(rel)
    return out
