"""Which files in a folder are images: the one rule training, prediction and every layout
share. Hidden entries (a leading dot) and system folders are never read; a folder reached twice
(a link loop) is read once; files without an image extension are listed, not read."""
import os
from pathlib import Path

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm",
              ".heic", ".heif"}
SYSTEM_FOLDERS = {"@eaDir", "__MACOSX", "__pycache__", "@Recycle", "#recycle", "$RECYCLE.BIN",
                  "System Volume Information", "lost+found"}


def hidden(name: str) -> bool:
    return name.startswith(".") or name in SYSTEM_FOLDERS


def files_below(folder: Path, seen: set, above: tuple = ()) -> list:
    """Every file below `folder`, skipping hidden and system folders and files. A link back to
    a folder above (a loop) is not followed; `seen` holds the real paths already read, so a
    file or folder reached twice counts once."""
    out, above = [], above + (os.path.realpath(folder),)
    for entry in sorted(folder.iterdir()):
        real = os.path.realpath(entry)
        if hidden(entry.name) or real in seen or any(real == a or a.startswith(real + os.sep)
                                                      for a in above):
            continue
        seen.add(real)
        if entry.is_dir():
            out += files_below(entry, seen, above)
        elif entry.is_file():
            out.append(entry)
    return out


def images_in(paths) -> tuple:
    """(image files, other files) of the given files and folders (folders read whole, by the
    rule above); a given file counts as an image whatever its name."""
    images, others, seen = [], [], set()
    for p in map(Path, paths):
        if not p.is_dir():
            images.append(p)
            continue
        for f in files_below(p, seen):
            (images if f.suffix.lower() in IMAGE_EXTS else others).append(f)
    return images, others
