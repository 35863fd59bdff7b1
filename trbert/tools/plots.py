"""Pictures: the accuracy–cost curve of ``python -m trbert tradeoff``, drawn with matplotlib, and the check,
made before any long work starts, that matplotlib is installed (a dependency an environment may still lack)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ..errors import InputError

STYLE = {  # method: (colour, marker, label)
    "tr-bert": ("#1d5fa6", "o", "TR-BERT (per alpha)"),
    "truncation": ("#d95f02", "s", "head truncation (FLOPs matched)"),
    "attention": ("#7570b3", "^", "attention top-k (same counts)"),
    "random": ("#888888", "v", "random drop (same counts, mean ± sd)"),
}


def require_matplotlib() -> None:
    if importlib.util.find_spec("matplotlib") is None:
        raise InputError("matplotlib is needed for the plots (a dependency of trbert): pip install matplotlib")


def plot_tradeoff(payload: dict, path: Path) -> None:
    """Metric against FLOPs speed-up (left) and against measured speed-up (right, the largest
    timed batch), one line per method, the full model as a dashed reference."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points, metric = payload["points"], payload["metric"]
    full = next(p for p in points if p["method"] == "full")
    batches = sorted(full["speedup"], key=int)
    panels = [("FLOPs speed-up (x)", lambda p: p["flops_speedup"])]
    if batches:
        panels.append((f"measured speed-up at batch {batches[-1]} (x)", lambda p: p["speedup"].get(batches[-1], 0.0)))
    reference = f"full model ({full['metric']:.3f})"
    fig, axes = plt.subplots(1, len(panels), figsize=(6.2 * len(panels), 4.6), squeeze=False)
    for ax, (label, x) in zip(axes[0], panels, strict=True):
        ax.axhline(full["metric"], color="black", linestyle="--", linewidth=1, label=reference)
        for method, (colour, marker, name) in STYLE.items():
            line = sorted((p for p in points if p["method"] == method), key=x)  # its frontier, by cost
            if not line:
                continue
            xs, ys, sd = [x(p) for p in line], [p["metric"] for p in line], [p["metric_std"] for p in line]
            ax.errorbar(xs, ys, yerr=sd, color=colour, marker=marker, label=name, capsize=3)
            if method == "tr-bert":  # its points are labelled with their alpha
                for p, xy in zip(line, zip(xs, ys, strict=True), strict=True):
                    alpha = p["setting"].replace("alpha=", "α=")
                    ax.annotate(alpha, xy, textcoords="offset points", xytext=(4, 5), fontsize=8)
        ax.set(xlabel=label, ylabel=metric)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8, loc="lower left")
    fig.suptitle(payload["title"])
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name(f".tmp-{path.name}")
    fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    tmp.replace(path)
