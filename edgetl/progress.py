"""Progress bars with throughput and ETA; sparse updates when output is not a terminal."""
import sys

from tqdm import tqdm


def bar(iterable=None, **kwargs) -> tqdm:
    interactive = sys.stderr.isatty()
    kwargs.setdefault("mininterval", 0.2 if interactive else 30.0)
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, **kwargs)
