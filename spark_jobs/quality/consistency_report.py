"""The consistency report: a PNG and an HTML page people look at rather than read.

One row of charts per logged value: the match rate per day, the distribution of the differences
(logged minus backfilled) of the rows that do not match, and per day how many of those match an
earlier cutoff (a stale online store) and how many match none (a logic difference). The page
shows the chart and the table's rows. Pure: rows and differences in, files out; no Spark.
"""

from __future__ import annotations

import html
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from spark_jobs.transforms.consistency import DATE, SCHEMA

_COLUMNS = [f.name for f in SCHEMA.fields]


def preload() -> None:
    """Import matplotlib in a background thread (about 2 s) while the job does its engine work."""
    threading.Thread(target=_pyplot, name="tilewise-preload-matplotlib", daemon=True).start()


def _pyplot():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_report(
    rows: Sequence[Mapping[str, Any]], diffs: Mapping[str, Sequence[float]], folder: Path, title: str
) -> tuple[Path, Path]:
    """Write `consistency.png` and `consistency.html` into `folder`; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    png, page = folder / "consistency.png", folder / "consistency.html"
    plot(rows, diffs, png, title)
    # Whole or not at all: the Data Docs beside it are rewritten by another thread meanwhile.
    tmp = page.with_suffix(".html.tmp")
    tmp.write_text(_page(rows, png.name, title), encoding="utf-8")
    tmp.replace(page)
    return png, page


def plot(rows: Sequence[Mapping[str, Any]], diffs: Mapping[str, Sequence[float]], path: Path, title: str) -> None:
    plt = _pyplot()
    names = sorted({r["logged"] for r in rows}) or ["(no logged values)"]
    fig, axes = plt.subplots(len(names), 3, figsize=(15, 3.2 * len(names)), squeeze=False)
    for i, name in enumerate(names):
        mine = sorted((r for r in rows if r["logged"] == name), key=lambda r: r[DATE])
        days = [str(r[DATE]) for r in mine]
        feature = mine[0]["feature"] if mine else ""
        ax = axes[i][0]
        rates = [r["match_rate"] if r["match_rate"] is not None else float("nan") for r in mine]
        ax.plot(days, rates, marker="o", color="#1f77b4")
        for x, y in zip(days, rates):
            if y == y:
                ax.annotate(f"{y:.1%}", (x, y), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)
        ax.set_ylim(min([0.9, *[y for y in rates if y == y]]) - 0.02, 1.02)
        ax.set_title(f"{name} vs {feature}: match rate per day", fontsize=10)
        ax.tick_params(axis="x", labelsize=8)

        ax = axes[i][1]
        values = list(diffs.get(name, ()))
        differ = sum(r["compared"] - r["matched"] for r in mine)
        if values:
            ax.hist(values, bins=40, color="#d62728")
            shown = f"{differ:,} rows that differ" + (f" ({len(values):,} drawn)" if len(values) < differ else "")
            ax.set_title(f"{name}: logged - backfilled, {shown}", fontsize=10)
            ax.tick_params(axis="x", labelsize=8, labelrotation=20)
        else:
            numeric = any(r["mean_abs_diff"] is not None or r["stale_matched"] is not None for r in mine)
            ax.text(0.5, 0.5, "no differences" if numeric else "not numeric", ha="center", va="center")
            ax.set_title(f"{name}: differences", fontsize=10)

        ax = axes[i][2]
        stale = [r["stale_matched"] or 0 for r in mine]
        logic = [r["compared"] - r["matched"] - (r["stale_matched"] or 0) for r in mine]
        ax.bar(days, stale, color="#ff7f0e", label="stale (matches an earlier cutoff)")
        ax.bar(days, logic, bottom=stale, color="#7f7f7f", label="logic (matches no cutoff)")
        ax.set_title(f"{name}: why rows differ", fontsize=10)
        ax.legend(fontsize=7)
        ax.tick_params(axis="x", labelsize=8)
    fig.suptitle(title)
    # Fixed margins: tight_layout draws the whole figure once more (seconds on a busy machine).
    height = fig.get_figheight()
    fig.subplots_adjust(left=0.05, right=0.98, top=1 - 0.7 / height, bottom=0.45 / height, hspace=0.45, wspace=0.2)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return html.escape(f"{value:,}" if isinstance(value, int) else str(value))


def _page(rows: Sequence[Mapping[str, Any]], png: str, title: str) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in _COLUMNS)
    body = "".join("<tr>" + "".join(f"<td>{_cell(r[c])}</td>" for c in _COLUMNS) + "</tr>" for r in rows)
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
        "padding:2px 6px;text-align:right}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><img src='{html.escape(png)}' alt='match rate per day and differences'>"
        "<p>stale_matched: rows that differ but match a lookup with the cutoff 1..6 finest blocks earlier "
        "(stale_lag_blocks: the most common lag); the rest of the rows that differ match no cutoff (logic).</p>"
        f"<table><tr>{head}</tr>{body}</table></body></html>"
    )
