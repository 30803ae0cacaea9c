"""Figures of the reports, each drawn twice: interactive (plotly, for the page) and static (matplotlib,
a PNG for slides and papers). No browser or kaleido is needed for the PNG.

Optuna's figures come from ``optuna.visualization`` and its ``matplotlib`` twin; ROC, DET and the
EER-against-size scatter are drawn here in both libraries from the same arrays.
"""
from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import plotly.graph_objects as go

DET_TICKS = (0.001, 0.01, 0.05, 0.2, 0.5, 0.8, 0.95, 0.99)
DET_CLIP = 1e-4            # rates of exactly 0 or 1 sit at the edge of the normal-deviate axes
PNG_DPI = 120


@dataclass
class Fig:
    name: str                          # files figures/NAME.html and NAME.png, div id fig-NAME
    figure: go.Figure
    static: Callable[[], Any]          # the same figure in matplotlib: a Figure, an Axes or an array of Axes


def pyplot():
    """matplotlib's pyplot, on the file-only Agg backend unless a session (a notebook) chose one already."""
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig: Fig, path: Path) -> None:
    plt = pyplot()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")    # optuna.visualization.matplotlib is marked experimental
        drawn = fig.static()
    figure = drawn if hasattr(drawn, "savefig") else np.ravel(drawn)[0].figure
    try:
        figure.savefig(path, dpi=PNG_DPI, bbox_inches="tight")
    finally:
        plt.close(figure)


def optuna_fig(name: str, plot: str, study, **kw) -> Fig:
    """An Optuna figure (``plot_slice``, ``plot_contour``, ...) in both libraries with the same options."""
    import optuna.visualization as interactive
    import optuna.visualization.matplotlib as static

    return Fig(name, getattr(interactive, plot)(study, **kw), lambda: getattr(static, plot)(study, **kw))


# ---------------------------------------------------------------- ROC and DET
def _roc(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(labels, scores)
    return fpr, tpr


def _deviate(p: Any) -> np.ndarray:
    from scipy.stats import norm

    return norm.ppf(np.clip(p, DET_CLIP, 1 - DET_CLIP))


def _det(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.metrics import det_curve

    fpr, fnr, _ = det_curve(labels, scores)
    return _deviate(fpr), _deviate(fnr)


def roc_figure(labels: np.ndarray, scores: np.ndarray, title: str) -> go.Figure:
    fpr, tpr = _roc(labels, scores)
    fig = go.Figure([go.Scatter(x=fpr, y=tpr, mode="lines", name="ROC"),
                     go.Scatter(x=[0, 1], y=[1, 0], mode="lines", name="EER line (FNR = FPR)",
                                line={"dash": "dot", "color": "gray"})])
    fig.update_layout(title=title, xaxis_title="false positive rate", yaxis_title="true positive rate",
                      xaxis_range=[0, 1], yaxis_range=[0, 1])
    return fig


def det_figure(labels: np.ndarray, scores: np.ndarray, title: str) -> go.Figure:
    """Miss rate against false-alarm rate on normal-deviate axes (Gaussian scores: straight lines)."""
    x, y = _det(labels, scores)
    ticks = {"tickvals": _deviate(np.array(DET_TICKS)), "ticktext": [f"{100 * p:g}%" for p in DET_TICKS]}
    edge = _deviate(np.array([DET_CLIP, 1 - DET_CLIP]))
    fig = go.Figure([go.Scatter(x=x, y=y, mode="lines", name="DET"),
                     go.Scatter(x=edge, y=edge, mode="lines", name="EER line (FNR = FPR)",
                                line={"dash": "dot", "color": "gray"})])
    fig.update_layout(title=title, xaxis={"title": "false positive rate", **ticks},
                      yaxis={"title": "false negative rate", **ticks})
    return fig


def roc_static(labels: np.ndarray, scores: np.ndarray, title: str):
    fpr, tpr = _roc(labels, scores)
    fig, ax = pyplot().subplots(figsize=(6, 5))
    ax.plot(fpr, tpr, label="ROC")
    ax.plot([0, 1], [1, 0], ":", color="gray", label="EER line (FNR = FPR)")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="false positive rate", ylabel="true positive rate", title=title)
    ax.legend(loc="lower right")
    return fig


def det_static(labels: np.ndarray, scores: np.ndarray, title: str):
    x, y = _det(labels, scores)
    fig, ax = pyplot().subplots(figsize=(6, 5))
    edge = _deviate(np.array([DET_CLIP, 1 - DET_CLIP]))
    ax.plot(x, y, label="DET")
    ax.plot(edge, edge, ":", color="gray", label="EER line (FNR = FPR)")
    ticks, names = _deviate(np.array(DET_TICKS)), [f"{100 * p:g}%" for p in DET_TICKS]
    ax.set_xticks(ticks, names)
    ax.set_yticks(ticks, names)
    ax.set(xlim=tuple(edge), ylim=tuple(edge), xlabel="false positive rate", ylabel="false negative rate",
           title=title)
    ax.legend(loc="upper right")
    return fig


def roc_det_figs(labels: np.ndarray, scores: np.ndarray, title: str, prefix: str = "") -> list[Fig]:
    return [Fig(f"{prefix}roc", roc_figure(labels, scores, title), lambda: roc_static(labels, scores, title)),
            Fig(f"{prefix}det", det_figure(labels, scores, title), lambda: det_static(labels, scores, title))]


# ---------------------------------------------------------------- EER against model size
def size_figure(name: str, points: list[tuple[str, float, float, float, float, str]], title: str) -> Fig:
    """Best val EER with its interval against parameter count; ``points``: (group, params, eer, low, high,
    hover text), one colour per group (architecture)."""
    groups = list(dict.fromkeys(p[0] for p in points))

    def error(rows):
        return {"type": "data", "symmetric": False, "array": [h - e for _, _, e, _, h, _ in rows],
                "arrayminus": [e - lo for _, _, e, lo, _, _ in rows]}

    interactive = go.Figure([go.Scatter(x=[p[1] for p in rows], y=[p[2] for p in rows], mode="markers",
                                        name=g, error_y=error(rows), text=[p[5] for p in rows])
                             for g in groups if (rows := [p for p in points if p[0] == g])])
    interactive.update_layout(title=title, xaxis_title="parameters (cap rule)",
                              yaxis_title="best val EER % (95% CI)")

    def static():
        fig, ax = pyplot().subplots(figsize=(7, 5))
        for g in groups:
            rows = [p for p in points if p[0] == g]
            e = error(rows)
            ax.errorbar([p[1] for p in rows], [p[2] for p in rows], yerr=[e["arrayminus"], e["array"]],
                        fmt="o", capsize=3, label=g)
        ax.set(xlabel="parameters (cap rule)", ylabel="best val EER % (95% CI)", title=title)
        ax.legend()
        return fig

    return Fig(name, interactive, static)
