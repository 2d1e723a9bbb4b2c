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


def group_label(group: str) -> str:
    """A curve's group in words: "depth=log2+1" -> "depth ⌈log2 n⌉ + 1", "width=2n" -> "width 2n"."""
    kind, value = group.split("=", 1)
    if value.startswith("log2+"):
        return f"depth ⌈log2 n⌉{'' if value == 'log2+0' else ' + ' + value[5:]}"
    if kind == "depth" and value == "1":
        return "depth 1 (shallow)"
    return f"{kind} {'n' if value == '1n' else value}"


def family_label(family: str) -> str:
    """A fitted family or law in words: "shifted_power" -> "shifted power"."""
    return family.replace("_", " ")


QUANTITY_LABEL = {"w50": "W50", "w_star": "w*", "units": "total units", "L_star": "L*", "steps": "steps to solve"}


def curve_label(curve: str) -> str:
    """A curve's name ("w50/depth=2") in words ("W50, depth 2")."""
    quantity, _, group = curve.partition("/")
    return f"{QUANTITY_LABEL.get(quantity, quantity)}, {group_label(group)}" if group else curve
