"""The evaluation's figures as PNG files: confusion matrices and a reliability diagram.

Inputs are the plain structures in ``metrics.json`` (nested count dicts, reliability bins), so
these functions know nothing about how a model was scored. Figures are drawn on matplotlib's
Agg canvas directly, never through pyplot: no global backend switch, no GUI, safe in a notebook
or a server process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

_DPI = 120


def confusion_png(
    category: dict[str, dict[str, int]], label: dict[str, dict[str, int]], path: Path
) -> Path:
    """Write the category confusion matrix with the label matrix beside it to ``path``.

    Rows are the truth, columns the prediction; cells show counts, colored by the share of their
    row (so a rare category's mistakes are as visible as a common one's). Returns ``path``.
    """
    figure = _figure(figsize=(11.5, 5.6))
    grid = figure.add_gridspec(1, 2, width_ratios=(len(category), len(label) + 1.5))
    _matrix(figure.add_subplot(grid[0, 0]), category, "category")
    image = _matrix(figure.add_subplot(grid[0, 1]), label, "label")
    figure.colorbar(image, ax=figure.axes, shrink=0.8, label="share of the true row")
    figure.suptitle("Confusion matrices (rows: truth, columns: prediction)")
    return _save(figure, path)


def reliability_png(bins: list[dict[str, Any]], ece: float | None, path: Path) -> Path:
    """Write a reliability diagram of ``bins`` to ``path``: per-bin label accuracy as bars at the
    bin's range, each bin's mean confidence as a marker, the diagonal of perfect calibration,
    the example count per bin, and the ECE in the title. Returns ``path``."""
    figure = _figure(figsize=(6.4, 6.4))
    grid = figure.add_gridspec(2, 1, height_ratios=(3, 1), hspace=0.08)
    top = figure.add_subplot(grid[0])
    bottom = figure.add_subplot(grid[1], sharex=top)
    lowers = [b["lower"] for b in bins]
    widths = [b["upper"] - b["lower"] for b in bins]
    filled = [b for b in bins if b["count"]]
    top.bar(
        [b["lower"] for b in filled],
        [b["accuracy"] for b in filled],
        width=[b["upper"] - b["lower"] for b in filled],
        align="edge",
        color="tab:blue",
        edgecolor="black",
        label="accuracy",
    )
    top.plot(
        [b["confidence"] for b in filled],
        [b["accuracy"] for b in filled],
        "o",
        color="tab:orange",
        label="mean confidence",
    )
    top.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
    for b in filled:
        top.annotate(
            f"n={b['count']}",
            ((b["lower"] + b["upper"]) / 2, b["accuracy"]),
            textcoords="offset points",
            xytext=(0, 3),
            ha="center",
            fontsize=7,
        )
    top.set(xlim=(0, 1), ylim=(0, 1.08), ylabel="label accuracy")
    top.tick_params(labelbottom=False)
    top.legend(loc="upper left", fontsize=8)
    shown = "n/a" if ece is None else f"{ece:.3f}"
    top.set_title(f"Reliability of the label confidence (ECE = {shown})")
    bottom.bar(lowers, [b["count"] for b in bins], width=widths, align="edge", color="gray")
    bottom.set(xlabel="confidence", ylabel="examples")
    return _save(figure, path)


def _figure(figsize: tuple[float, float]) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=figsize, dpi=_DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _matrix(axes: Any, matrix: dict[str, dict[str, int]], name: str) -> Any:
    truths = list(matrix)
    predictions = list(next(iter(matrix.values()))) if matrix else []
    counts = [[matrix[t][p] for p in predictions] for t in truths]
    shares = [[c / (sum(row) or 1) for c in row] for row in counts]
    image = axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for i, row in enumerate(counts):
        for j, count in enumerate(row):
            color = "white" if shares[i][j] > 0.6 else "black"
            axes.text(j, i, str(count), ha="center", va="center", color=color, fontsize=8)
    axes.set_xticks(range(len(predictions)), predictions, rotation=45, ha="right")
    axes.set_yticks(range(len(truths)), truths)
    axes.set(xlabel=f"predicted {name}", ylabel=f"true {name}", title=name)
    return image


def _save(figure: Any, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path
