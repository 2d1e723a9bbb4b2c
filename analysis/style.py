"""One paper style for every figure: sizes, fonts, a colour-blind-safe palette (Okabe-Ito), no chart junk."""

from __future__ import annotations

import contextlib

import matplotlib

SINGLE_COLUMN = 3.3  # inches
DOUBLE_COLUMN = 6.8
# Okabe & Ito (2008): distinguishable under the common colour-vision deficiencies.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]
THEORY_STYLE = {"dnf": ":", "one_layer": "--", "xor_tree": "-.", "sawtooth": (0, (5, 1, 1, 1, 1, 1))}

RC = {
    "font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "legend.fontsize": 6.5,
    "xtick.labelsize": 7, "ytick.labelsize": 7, "axes.spines.top": False, "axes.spines.right": False,
    "axes.prop_cycle": matplotlib.cycler(color=PALETTE), "legend.frameon": False, "lines.linewidth": 1.2,
    "lines.markersize": 3.5, "figure.dpi": 100, "savefig.bbox": "tight", "savefig.pad_inches": 0.02,
    "pdf.fonttype": 42,  # editable text in the PDF
}


@contextlib.contextmanager
def paper():
    """Apply the style for the figures drawn inside the block (no global change; figures are built as
    matplotlib.figure.Figure objects, without pyplot, so no GUI backend is ever touched)."""
    with matplotlib.rc_context(RC):
        yield


def colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]
