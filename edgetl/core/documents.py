"""The JSON documents that cross stages (the export manifest, each bundle's manifest, the bench
report), each read and written here, stamped with its kind and the version of its layout: a
later edgetl reads an older document (one without a stamp is version 1), and a document from a
newer edgetl is refused in one line instead of being misread."""
from .errors import RunError
from .files import read_json, write_json

VERSIONS = {"export": 2, "bundle": 3, "bench": 2}     # kind -> the layout this edgetl writes


def write(path, kind: str, doc: dict) -> None:
    write_json(path, {**doc, "document": kind, "version": VERSIONS[kind]})


def read(path, kind: str) -> dict:
    doc = read_json(path)
    found, version = doc.get("document", kind), doc.get("version", 1)
    if found != kind:
        raise RunError(f"{path} is an edgetl {found} document, not the {kind} document "
                       "expected there: restore it, or run the stage that writes it again")
    if not isinstance(version, int) or version > VERSIONS[kind]:
        raise RunError(f"{path} was written by a newer edgetl ({kind} document version "
                       f"{version}; this one reads up to {VERSIONS[kind]}): upgrade edgetl")
    return doc
