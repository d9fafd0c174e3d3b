"""What the benchmark scripts (scripts/bench*.py) share: percentiles, the machine and date a report starts with,
millisecond table cells, the matplotlib set-up, and writing the JSON report (with its PNG plot)."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np


def pct(values: Iterable[float | None], q: float, digits: int | None = 1) -> float | None:
    """The ``q``-th percentile of the values that are not None, rounded to ``digits`` (None: not rounded);
    None when there are no values."""
    values = [v for v in values if v is not None]
    if not values:
        return None
    value = float(np.percentile(values, q))
    return round(value, digits) if digits is not None else value


def machine_and_date() -> dict[str, str]:
    """The first keys of a report: the machine (architecture, CPU count) and when it ran."""
    return {"machine": f"{platform.machine()} cpus={os.cpu_count()}", "date": time.strftime("%Y-%m-%d %H:%M")}


def ms(value: float | None, width: int) -> str:
    """A table cell ``width`` characters wide: whole milliseconds and "ms" (None shows as 0)."""
    return f"{value or 0:>{width - 2}.0f}ms"


def pyplot() -> Any:
    """matplotlib.pyplot, drawing to files only (the Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def write_report(report: dict, out: Path, plot: Callable[[dict, Path], None] | None = None) -> None:
    """Writes ``report`` as JSON to ``out`` and, given ``plot``, its plot to the PNG beside it; says where."""
    out.write_text(json.dumps(report, indent=2))
    if plot is None:
        print(f"written to {out}")
        return
    png = out.with_suffix(".png")
    plot(report, png)
    print(f"written to {out} and {png}")
