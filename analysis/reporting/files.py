"""What `scaling analyze` writes into a results directory (the one writer of each), and how: summary.csv,
fits.json as strict JSON, every figure as PDF and PNG, and REPORT.md last, all or nothing."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from scaling.storage.outputs import write_outputs

PNG_DPI = 200
SUMMARY, FITS, REPORT, FIGURES_DIR = "summary.csv", "fits.json", "REPORT.md", "figures"
FIGURE_SUFFIXES = (".pdf", ".png")


def figure_bytes(fig: Figure, fmt: str) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, dpi=PNG_DPI, bbox_inches="tight", pad_inches=0.02)
    return buffer.getvalue()


def strict_json(data: Any) -> str:
    """JSON that every reader accepts: NaN and infinities become null, numpy numbers plain ones."""
    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {str(k): clean(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [clean(v) for v in value]
        if hasattr(value, "tolist"):  # numpy scalars and arrays
            return clean(value.tolist())
        if isinstance(value, float) and not math.isfinite(value):
            return None
        return value

    return json.dumps(clean(data), indent=2, allow_nan=False)


def write_study(dir: Path, summary: pd.DataFrame, fits_json: str, figures: dict[str, Figure], report: str
                ) -> list[Path]:
    """Write a study's files, all or nothing; returns their paths."""
    files: dict[str, bytes | str] = {SUMMARY: summary.to_csv(index=False), FITS: fits_json}
    for name, fig in figures.items():
        for suffix in FIGURE_SUFFIXES:
            files[f"{FIGURES_DIR}/{name}{suffix}"] = figure_bytes(fig, suffix[1:])
    files[REPORT] = report
    return write_outputs(dir, files)  # the report last
