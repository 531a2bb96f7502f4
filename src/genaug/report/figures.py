"""The report's figures, drawn with matplotlib's Agg renderer into PNG files.

Figures are built as ``matplotlib.figure.Figure`` objects rather than through pyplot, so
drawing them touches no global state (no backend switch, no open-figure registry). Labels
that come from the data go through :func:`plain` so that matplotlib shows them as typed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from genaug.fonts import figure_font_families, figure_labels
from genaug.report.run import Curve

DPI = 110
BASELINE_COLOUR = "#6b7280"
ARM_COLOUR = "#2456c7"
KEPT_COLOUR = "#2f855a"
DROPPED_COLOUR = "#c53030"
GENERATION_COLOUR = "#7c3aed"
TRAINING_COLOUR = "#2563eb"
#: PCA sees at most this many sampled vectors (drawn with a fixed seed), so the plot stays legible.
MAX_SAMPLED_POINTS = 4000


def plain(text: str) -> str:
    """``text`` as matplotlib should print it: '$' would start mathtext, and a legend hides
    labels that begin with '_'."""
    text = str(text).replace("$", r"\$")
    return " " + text if text.startswith("_") else text


def short(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters with an ellipsis (figures have little room; the
    table shows names in full)."""
    text = str(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def class_colours(count: int) -> list:
    """One colour per class: the qualitative tab10 / tab20 maps, a hue wheel beyond 20."""
    from matplotlib import colormaps

    if count <= 10:
        return [colormaps["tab10"](i) for i in range(count)]
    if count <= 20:
        return [colormaps["tab20"](i) for i in range(count)]
    return [colormaps["hsv"](i / count) for i in range(count)]


def _save(figure: Figure, path: Path) -> Path:
    from matplotlib.text import Text

    families = list(figure_font_families())  # a CJK font, when installed, behind the default
    for text in figure.findobj(Text):
        text.set_fontfamily(families)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI, bbox_inches="tight", facecolor="white")
    return path


def _grid(count: int, max_columns: int) -> tuple[int, int]:
    columns = min(max_columns, count)
    return math.ceil(count / columns), columns


# ---------------------------------------------------------------------------- accuracy


def accuracy_figure(curves: dict[str, Curve], baseline: str | None, path: Path) -> Path:
    """Validation top-1 per epoch, one panel per arm: the mean over seeds and a band from the
    lowest to the highest seed, with the baseline's mean dashed in grey for comparison."""
    rows, columns = _grid(len(curves), 4)
    figure = Figure(figsize=(2.9 * columns, 2.3 * rows + 0.3), layout="constrained")
    axes = figure.subplots(rows, columns, sharex=True, sharey=True, squeeze=False)
    reference = curves.get(baseline) if baseline else None
    for index, (arm, curve) in enumerate(curves.items()):
        ax = axes[index // columns][index % columns]
        if reference is not None and arm != baseline:
            ax.plot(reference.epochs, reference.mean, color=BASELINE_COLOUR, linestyle="--", linewidth=1.1)
        colour = BASELINE_COLOUR if arm == baseline else ARM_COLOUR
        ax.fill_between(curve.epochs, curve.low, curve.high, color=colour, alpha=0.22, linewidth=0)
        ax.plot(curve.epochs, curve.mean, color=colour, linewidth=1.8)
        title = f"{arm} (baseline)" if arm == baseline else arm
        ax.set_title(plain(short(title, 36)), fontsize=9.5, loc="left")
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=8)
    for index in range(len(curves), rows * columns):
        axes[index // columns][index % columns].set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("epoch", fontsize=9)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers, from 1
    for row in axes:
        row[0].set_ylabel("val top-1 (%)", fontsize=9)
    if reference is not None and len(curves) > 1:
        figure.legend(
            [Line2D([], [], color=ARM_COLOUR, linewidth=1.8), Line2D([], [], color=BASELINE_COLOUR, linestyle="--")],
            ["arm (mean, band = seeds' min to max)", plain(f"baseline: {baseline}")],
            loc="outside upper center", ncols=2, fontsize=8.5, frameon=False,
        )
    return _save(figure, path)


# ---------------------------------------------------------------------------- rho(t)


@dataclass
class ScheduleCurve:
    """rho(t) of one schedule: a fine curve over [0, T] and its values at the trained epochs."""

    label: str
    t: np.ndarray
    rho: np.ndarray
    epochs: np.ndarray
    rho_at_epochs: np.ndarray


def rho_figure(schedules: list[ScheduleCurve], total_epochs: int, path: Path) -> Path:
    figure = Figure(figsize=(7.2, 3.4), layout="constrained")
    ax = figure.subplots()
    colours = class_colours(len(schedules))
    for colour, schedule in zip(colours, schedules):
        ax.plot(schedule.t, schedule.rho, color=colour, linewidth=1.8, label=plain(schedule.label))
        ax.plot(schedule.epochs, schedule.rho_at_epochs, "o", color=colour, markersize=3)
    ax.set_xlim(0, total_epochs)
    ax.set_ylim(-0.04, 1.04)
    ax.set_xlabel("epoch t")
    ax.set_ylabel("rho(t): P(real sample replaced)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8.5, loc="upper left", frameon=False)
    return _save(figure, path)


# ---------------------------------------------------------------------------- SDI feature space


def feature_space_figure(
    real: np.ndarray, real_labels: np.ndarray, sampled: np.ndarray, sampled_labels: np.ndarray,
    class_names: list[str], path: Path,
) -> Path:
    """Real (dots) and sampled (crosses) features in the 2-D PCA plane of the real features,
    coloured by class."""
    from sklearn.decomposition import PCA

    if len(sampled) > MAX_SAMPLED_POINTS:
        keep = np.sort(np.random.default_rng(0).choice(len(sampled), MAX_SAMPLED_POINTS, replace=False))
        sampled, sampled_labels = sampled[keep], sampled_labels[keep]
    pca = PCA(n_components=2, random_state=0).fit(real)
    real_2d, sampled_2d = pca.transform(real), pca.transform(sampled)
    colours = class_colours(len(class_names))

    figure = Figure(figsize=(7.2, 5.2), layout="constrained")
    ax = figure.subplots()
    for label, colour in enumerate(colours):
        rows = sampled_labels == label
        ax.scatter(sampled_2d[rows, 0], sampled_2d[rows, 1], marker="x", s=16, linewidths=0.8, color=colour, alpha=0.55)
    for label, colour in enumerate(colours):
        rows = real_labels == label
        ax.scatter(real_2d[rows, 0], real_2d[rows, 1], marker="o", s=26, color=colour, edgecolors="black", linewidths=0.5)
    share = pca.explained_variance_ratio_
    ax.set_xlabel(f"PC 1 ({share[0]:.0%} of the real features' variance)")
    ax.set_ylabel(f"PC 2 ({share[1]:.0%})")
    ax.grid(alpha=0.3)
    handles = [
        Line2D([], [], marker="o", linestyle="", color="#999", markeredgecolor="black", label="real (bank)"),
        Line2D([], [], marker="x", linestyle="", color="#555", label="sampled"),
    ]
    if len(class_names) <= 20:
        labels = figure_labels(class_names)  # drawable and never two alike
        handles += [Line2D([], [], marker="s", linestyle="", color=c, label=plain(n)) for c, n in zip(colours, labels)]
    figure.legend(handles=handles, loc="outside right upper", fontsize=8, frameon=False)
    return _save(figure, path)


# ---------------------------------------------------------------------------- filter scores


@dataclass
class ScoreColumn:
    """One score over a set's records and the filters' final verdict on each."""

    name: str
    values: np.ndarray
    kept: np.ndarray

    def cut(self) -> float | None:
        """A threshold separating kept from dropped, when one exists (a rank-per-class filter
        cuts each class at its own place, so its classes overlap and there is none)."""
        kept, dropped = self.values[self.kept], self.values[~self.kept]
        if not len(kept) or not len(dropped):
            return None
        if kept.min() > dropped.max():
            return float((kept.min() + dropped.max()) / 2)
        if kept.max() < dropped.min():
            return float((kept.max() + dropped.min()) / 2)
        return None


def filter_scores_figure(columns: list[ScoreColumn], path: Path) -> Path:
    """A histogram per score, kept and dropped records stacked, and the cut where there is one."""
    rows, per_row = _grid(len(columns), 3)
    figure = Figure(figsize=(3.5 * per_row, 2.6 * rows), layout="constrained")
    axes = figure.subplots(rows, per_row, squeeze=False)
    for index, column in enumerate(columns):
        ax = axes[index // per_row][index % per_row]
        low, high = float(column.values.min()), float(column.values.max())
        bins = np.linspace(low, high if high > low else low + 1e-6, 31)
        ax.hist(
            [column.values[column.kept], column.values[~column.kept]], bins=bins, stacked=True,
            color=[KEPT_COLOUR, DROPPED_COLOUR],
            label=[f"kept ({int(column.kept.sum())})", f"dropped ({int((~column.kept).sum())})"],
        )
        cut = column.cut()
        if cut is not None:
            ax.axvline(cut, color="black", linestyle="--", linewidth=1.2, label=f"cut {cut:.3g}")
        ax.set_title(plain(column.name), fontsize=9.5, loc="left")
        ax.set_ylabel("images", fontsize=8.5)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7.5, frameon=False)
    for index in range(len(columns), rows * per_row):
        axes[index // per_row][index % per_row].set_visible(False)
    return _save(figure, path)


# ---------------------------------------------------------------------------- verdicts


VERDICT_COLOURS = {"better": "#2f855a", "worse": "#c53030", "not resolved": "#6b7280", "too few seeds": "#a0aec0"}


@dataclass(frozen=True)
class ForestRow:
    """One comparison: its label, mean difference, interval (None when undefined) and verdict."""

    label: str
    mean: float
    low: float | None
    high: float | None
    verdict: str


def forest_figure(panels: dict[str, list[ForestRow]], path: Path, level: float = 0.95) -> Path:
    """Differences with their intervals, one panel per compute view, rows in the order given
    (the caller sorts them), a line at zero, coloured by verdict."""
    rows = max((len(panel) for panel in panels.values()), default=1)
    figure = Figure(figsize=(4.4 * len(panels) + 1.6, 0.34 * rows + 1.4), layout="constrained")
    axes = np.atleast_1d(figure.subplots(1, len(panels), sharey=True, squeeze=False)[0])
    labels = [row.label for row in next(iter(panels.values()))] if panels else []
    spans = [v for panel in panels.values() for row in panel for v in (row.low, row.high, row.mean) if v is not None and math.isfinite(v)]
    limit = max([abs(v) for v in spans] + [1.0]) * 1.1
    for ax, (title, panel) in zip(axes, panels.items()):
        positions = {row.label: i for i, row in enumerate(next(iter(panels.values())))}
        for row in panel:
            y = positions.get(row.label)
            if y is None:
                continue
            colour = VERDICT_COLOURS.get(row.verdict, BASELINE_COLOUR)
            if row.low is not None and row.high is not None:
                ax.plot([row.low, row.high], [y, y], color=colour, lw=2.2, solid_capstyle="butt")
            ax.plot([row.mean], [y], "o", color=colour, ms=6)
        ax.axvline(0.0, color="#111827", lw=0.9)
        ax.set_xlim(-limit, limit)
        ax.set_title(plain(title), fontsize=10)
        ax.set_xlabel(f"difference in test top-1, points ({level:.0%} paired interval)", fontsize=8.5)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(range(len(labels)), [plain(short(label, 44)) for label in labels], fontsize=8.5)
    axes[0].set_ylim(len(labels) - 0.5, -0.5)
    handles = [Line2D([], [], color=colour, marker="o", lw=2, label=verdict) for verdict, colour in VERDICT_COLOURS.items()]
    figure.legend(handles=handles, loc="outside lower center", ncols=4, fontsize=8.5, frameon=False)
    return _save(figure, path)


# ---------------------------------------------------------------------------- cost


def cost_figure(arms: list[str], generation_seconds: list[float], train_seconds: list[float], path: Path) -> Path:
    """Generation and training seconds per arm, stacked horizontal bars (arm order of the table)."""
    figure = Figure(figsize=(7.6, 0.38 * len(arms) + 1.3), layout="constrained")
    ax = figure.subplots()
    positions = np.arange(len(arms))
    generation = np.nan_to_num(np.asarray(generation_seconds, dtype=np.float64))
    training = np.nan_to_num(np.asarray(train_seconds, dtype=np.float64))
    ax.barh(positions, generation, color=GENERATION_COLOUR, label="generation (s)")
    ax.barh(positions, training, left=generation, color=TRAINING_COLOUR, label="training (s)")
    for y, total in zip(positions, generation + training):
        ax.text(total, y, f"  {total:,.0f} s", va="center", fontsize=8)
    ax.set_yticks(positions, [plain(short(arm, 40)) for arm in arms], fontsize=8.5)
    ax.invert_yaxis()
    ax.set_xlim(0, max(1.0, float((generation + training).max())) * 1.15)
    ax.set_xlabel("seconds")
    ax.grid(axis="x", alpha=0.3)
    figure.legend(loc="outside upper left", ncols=2, fontsize=8.5, frameon=False)
    return _save(figure, path)


def sampling_frontier_figure(rows: list[dict], fast: dict | None, path: Path, title: str = "") -> Path:
    """Images/s (log scale) against class fidelity, one marker per sampling setting; the
    Pareto frontier joined, the reference and the fast preset ringed."""
    from matplotlib import colormaps

    figure = Figure(figsize=(7.5, 4.8))
    axes = figure.subplots()
    names = sorted({row["scheduler"] for row in rows})
    colours = {name: colormaps["tab10"](i) for i, name in enumerate(names)}
    markers = {"fp32": "o", "bf16": "s", "fp16": "^"}
    for row in rows:
        axes.scatter(row["images_per_second"], row["digit_fidelity"], color=colours[row["scheduler"]],
                     marker=markers.get(row["precision"], "o"), s=28, zorder=3)
        axes.annotate(str(row["num_inference_steps"]), (row["images_per_second"], row["digit_fidelity"]),
                      textcoords="offset points", xytext=(4, 3), fontsize=7)
    front = sorted((r for r in rows if r.get("frontier")), key=lambda r: r["images_per_second"])
    if front:
        axes.plot([r["images_per_second"] for r in front], [r["digit_fidelity"] for r in front], color="#111827",
                  linewidth=1, zorder=2, label="Pareto frontier")
    for row, label, colour in ((next(r for r in rows if r["reference"]), "reference", BASELINE_COLOUR), (fast, "fast", KEPT_COLOUR)):
        if row is not None:
            axes.scatter(row["images_per_second"], row["digit_fidelity"], s=160, facecolors="none", edgecolors=colour,
                         linewidths=2, zorder=4, label=label)
    handles = [Line2D([], [], color=colours[n], marker="o", linestyle="", label=plain(n)) for n in names]
    handles += [Line2D([], [], color="#374151", marker=m, linestyle="", label=p) for p, m in markers.items()
                if any(r["precision"] == p for r in rows)]
    axes.legend(handles=handles + axes.get_legend_handles_labels()[0], fontsize=7, loc="lower left")
    axes.set_xscale("log")
    axes.set_xlabel("images per second (log scale; labels: steps)")
    axes.set_ylabel("class fidelity (judge)")
    axes.set_title(plain(title), fontsize=9)
    axes.grid(alpha=0.3)
    return _save(figure, path)


# ---------------------------------------------------------------------------- gain against set metrics


@dataclass
class GainPoint:
    """One arm: its accuracy gain over the baseline (spread over seeds) and its set's metrics."""

    arm: str
    gain: float
    spread: float
    parity: bool
    metrics: dict[str, float | None]


#: The panels of :func:`gain_figure`: metric key, title, axis label.
GAIN_PANELS = (
    ("fd", "FD (CLIP space)", "lower = closer to the real images"),
    ("coverage", "coverage", "share of real images near a synthetic one"),
    ("fidelity", "class fidelity", "share the judge assigns to their class"),
    ("diversity", "intra-class diversity", "mean pairwise cosine distance"),
)


def gain_figure(points: list[GainPoint], path: Path, fidelity_label: str = "") -> Path:
    """:func:`draw_gain` saved to ``path``."""
    return _save(draw_gain(points, fidelity_label), path)


def draw_gain(points: list[GainPoint], fidelity_label: str = "") -> Figure:
    """Accuracy gain against each set metric (:data:`GAIN_PANELS`), one panel each, every arm
    labelled: filled circles for natural counts, open squares for parity subsamples, a bar
    of one standard deviation over seeds, and Pearson's r across the arms in the corner."""
    figure = Figure(figsize=(12.0, 3.6), layout="constrained")
    axes = figure.subplots(1, len(GAIN_PANELS), sharey=True, squeeze=False)[0]
    for ax, (key, title, label) in zip(axes, GAIN_PANELS):
        ax.axhline(0.0, color=BASELINE_COLOUR, linestyle="--", linewidth=1.0)
        shown = [p for p in points if p.metrics.get(key) is not None and math.isfinite(p.metrics[key])]
        for point in shown:
            x = point.metrics[key]
            ax.errorbar(x, point.gain, yerr=point.spread, color=ARM_COLOUR, linewidth=0.9, capsize=2,
                        marker="s" if point.parity else "o", markersize=6,
                        markerfacecolor="white" if point.parity else ARM_COLOUR)
            ax.annotate(plain(short(point.arm, 20)), (x, point.gain), textcoords="offset points", xytext=(4, 4), fontsize=7)
        if len(shown) >= 3:
            xs = np.array([p.metrics[key] for p in shown])
            ys = np.array([p.gain for p in shown])
            if xs.std() > 0 and ys.std() > 0:
                r = float(np.corrcoef(xs, ys)[0, 1])
                ax.text(0.02, 0.97, f"r = {r:+.2f} (n = {len(shown)})", transform=ax.transAxes, va="top", fontsize=8)
        ax.set_title(plain(title), fontsize=9.5, loc="left")
        ax.set_xlabel(plain(label if key != "fidelity" or not fidelity_label else f"judge: {fidelity_label}"), fontsize=8)
        ax.margins(x=0.3, y=0.12)
        ax.xaxis.set_major_locator(MaxNLocator(4))
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=8)
    axes[0].set_ylabel("gain in test top-1 (points)", fontsize=9)
    figure.legend(
        [Line2D([], [], color=ARM_COLOUR, marker="o", linestyle=""),
         Line2D([], [], color=ARM_COLOUR, marker="s", markerfacecolor="white", linestyle=""),
         Line2D([], [], color=BASELINE_COLOUR, linestyle="--")],
        ["natural count", "budget parity", "baseline"], loc="outside upper center", ncols=3, fontsize=8.5, frameon=False,
    )  # fmt: skip
    return figure
