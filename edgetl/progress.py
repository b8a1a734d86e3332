"""Console output: progress bars with throughput and ETA (sparse updates when output is not a
terminal) and tables rendered as plain text."""
import sys

from tqdm import tqdm


def bar(iterable=None, **kwargs) -> tqdm:
    interactive = sys.stderr.isatty()
    kwargs.setdefault("mininterval", 0.2 if interactive else 30.0)
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, **kwargs)


def render(table, width: int = 120) -> str:
    """A rich Table as plain text (no colour codes), for printing and for report files."""
    import io

    from rich.console import Console
    console = Console(file=io.StringIO(), width=width, color_system=None)
    console.print(table)
    return console.file.getvalue()
