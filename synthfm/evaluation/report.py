"""Write an evaluation's outputs: per_object.csv, summary.json, summary.md, dice.png, overlays/.

Every file goes through :mod:`synthfm.io.atomic`, so a failed run leaves earlier outputs intact.

* ``per_object.csv``: one line per object x prompt x method (columns ``CSV_COLUMNS``); ``slice``
  is empty for 2D images; ``hd95`` is empty (NaN) when the prediction is empty.
* ``summary.json``: ``{"protocol", "methods", "datasets", "rows", "skipped", "skipped_count",
  "skipped_datasets"}``; a row per method x dataset x prompt plus ``"ALL:<modality>"`` rows that
  pool every object of that modality.  ``datasets[name]`` = {modality, objects, cases (with at
  least one object), slices, pseudo_labels}; ``skipped`` lists {dataset, case, slice, reason}.
  Row statistics: dice mean/median, iou mean, nsd mean,
  hd95 median over non-empty predictions, count of empty predictions, n.
* ``summary.md``: one Markdown table per prompt, datasets (then modality pools) as rows and
  methods as columns, cells = mean DSC.
* ``dice.png``: grouped bars of mean DSC, one panel per prompt (two per row), modality pools
  on the x axis, a bar per method.
* ``overlays/<dataset>__<method>__{best,worst}.png``: the object with the highest / lowest DSC
  at the first prompt setting, cropped around it, drawn by :mod:`synthfm.inference.overlays`
  (prediction amber, ground truth azure, clicks green / red, a legend and a caption under it).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from pathlib import Path

import numpy as np

from synthfm import __version__
from synthfm.io.atomic import atomic_output, atomic_write_bytes, new_output_folder
from synthfm.evaluation.protocol import EvaluationResult, Example, ObjectRow

CSV_COLUMNS = ("dataset", "case", "slice", "class", "object", "prompt", "method", "dice", "iou", "nsd", "hd95", "area")
OUTPUT_FILES = ("per_object.csv", "summary.json", "summary.md", "dice.png")


def write_report(out_dir: str | Path, result: EvaluationResult, overlays: bool = True, overwrite: bool = True) -> dict:
    """Write every output into ``out_dir`` (created if needed); returns the summary dict.

    overwrite=False: the first file (per_object.csv) is created exclusively, so a second run into
    the same new folder fails instead of mixing its files with the first run's.
    """
    # a failed report into a new folder (a full disk) leaves no folder behind
    with new_output_folder(out_dir, remove_tree=True) as out:
        return _write_report(out, result, overlays, overwrite)


def _write_report(out: Path, result: EvaluationResult, overlays: bool, overwrite: bool) -> dict:
    summary = summarise(result)
    write_per_object_csv(out / "per_object.csv", result.rows, exclusive=not overwrite)
    atomic_write_bytes(out / "summary.json", (json.dumps(summary, indent=2, allow_nan=False) + "\n").encode())
    atomic_write_bytes(out / "summary.md", summary_markdown(summary).encode())
    plot_dice(out / "dice.png", summary)
    if overlays:
        write_overlays(out / "overlays", result.examples)
    return summary


def write_per_object_csv(path: str | Path, rows: list[ObjectRow], exclusive: bool = False) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in rows:
        writer.writerow([
            r.dataset, r.case, "" if r.slice is None else r.slice, r.class_name, r.object, r.prompt, r.method,
            _fmt(r.dice), _fmt(r.iou), _fmt(r.nsd), _fmt(r.hd95), r.area,
        ])
    atomic_write_bytes(path, buf.getvalue().encode(), exclusive=exclusive)


def _fmt(x: float) -> str:
    return "" if x is None or not math.isfinite(x) else f"{x:.6g}"


# ------------------------------------------------------------------------------------ summary


def summarise(result: EvaluationResult) -> dict:
    """The summary.json dictionary (see module docstring)."""
    prompts = result.protocol.prompt_labels()
    methods = list(result.methods)
    groups: dict[tuple[str, str, str], list[ObjectRow]] = {}
    for r in result.rows:
        groups.setdefault((r.method, r.dataset, r.prompt), []).append(r)
        groups.setdefault((r.method, f"ALL:{r.modality}", r.prompt), []).append(r)
    modality_of = {name: d["modality"] for name, d in result.datasets.items()}
    datasets = [d for d in result.datasets if result.datasets[d]["objects"] > 0]
    pools = sorted({f"ALL:{modality_of[d]}" for d in datasets})
    rows = []
    for prompt in prompts:
        for name in datasets + pools:
            for method in methods:
                members = groups.get((method, name, prompt), [])
                if not members:
                    continue
                modality = name[4:] if name.startswith("ALL:") else modality_of[name]
                rows.append({"method": method, "dataset": name, "modality": modality, "prompt": prompt, **_stats(members)})
    return {
        "synthfm_version": __version__,
        "protocol": result.protocol.to_dict(),
        "methods": result.methods,
        "datasets": result.datasets,
        "rows": rows,
        "skipped": result.skipped,
        "skipped_count": len(result.skipped),
        "skipped_datasets": result.skipped_datasets,
    }


def _stats(rows: list[ObjectRow]) -> dict:
    dice = np.array([r.dice for r in rows], float)
    hd = np.array([r.hd95 for r in rows], float)
    finite = hd[np.isfinite(hd)]
    return {
        "dice_mean": round(float(dice.mean()), 6),
        "dice_median": round(float(np.median(dice)), 6),
        "iou_mean": round(float(np.mean([r.iou for r in rows])), 6),
        "nsd_mean": round(float(np.mean([r.nsd for r in rows])), 6),
        "hd95_median": round(float(np.median(finite)), 6) if finite.size else None,
        "empty_predictions": int(sum(r.empty_prediction for r in rows)),
        "n": len(rows),
    }


def summary_markdown(summary: dict) -> str:
    """Markdown: one table per prompt, rows = datasets then ALL:<modality> pools, columns = methods."""
    methods = list(summary["methods"])
    proto = summary["protocol"]
    lines = [
        "# Zero-shot point-prompt evaluation",
        "",
        f"Mean DSC per object (seed {proto['seed']}, objects >= {proto['min_area']:g} of the image; "
        "ALL rows pool every object of a modality). n = objects.",
        "",
    ]
    by_key = {(r["prompt"], r["dataset"], r["method"]): r for r in summary["rows"]}
    for prompt in proto["prompts"]:
        names = []
        for r in summary["rows"]:
            if r["prompt"] == prompt and r["dataset"] not in names:
                names.append(r["dataset"])
        if not names:
            continue
        kind = "interactive, after %s click(s)" % prompt[1:] if prompt.startswith("i") else "%s positive, %s negative clicks" % tuple(prompt.split(","))
        lines += [f"## Prompt {prompt} ({kind})", "", "| dataset | modality | n | " + " | ".join(methods) + " |"]
        lines.append("|---|---|---:|" + "---:|" * len(methods))
        for name in names:
            cells = [by_key.get((prompt, name, m)) for m in methods]
            first = next(c for c in cells if c is not None)
            vals = ["—" if c is None else f"{c['dice_mean']:.3f}" for c in cells]
            label = f"**{name}**" if name.startswith("ALL:") else name
            lines.append(f"| {label} | {first['modality']} | {first['n']} | " + " | ".join(vals) + " |")
        lines.append("")
    if summary["skipped_count"]:
        lines += [f"Skipped cases: {summary['skipped_count']} (reasons in summary.json).", ""]
    if summary["skipped_datasets"]:
        lines += ["Pseudo-label datasets not evaluated: " + ", ".join(summary["skipped_datasets"]) + ".", ""]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ figures


def plot_dice(path: str | Path, summary: dict) -> None:
    """Grouped bar chart of mean DSC: a panel per prompt, modality pools on x, a bar per method."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    methods = list(summary["methods"])
    prompts = [p for p in summary["protocol"]["prompts"] if any(r["prompt"] == p for r in summary["rows"])] or ["-"]
    pools = sorted({r["dataset"] for r in summary["rows"] if r["dataset"].startswith("ALL:")})
    by_key = {(r["prompt"], r["dataset"], r["method"]): r["dice_mean"] for r in summary["rows"]}
    ncols = min(2, len(prompts))
    nrows = -(-len(prompts) // ncols)
    panel_w = min(9.0, max(3.5, 0.25 * len(pools) * len(methods) + 1.5))
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel_w * ncols, 3.2 * nrows), squeeze=False, sharey=True)
    width = 0.8 / max(1, len(methods))
    x = np.arange(len(pools))
    for ax in axes.ravel()[len(prompts):]:
        ax.set_visible(False)
    for ax, prompt in zip(axes.ravel(), prompts):
        for k, method in enumerate(methods):
            vals = [by_key.get((prompt, pool, method), np.nan) for pool in pools]
            ax.bar(x + (k - (len(methods) - 1) / 2) * width, vals, width, label=method)
        ax.set_xticks(x, [p[4:] for p in pools])
        ax.set_title(f"prompt {prompt}")
        ax.set_ylim(0, 1)
        ax.grid(axis="y", alpha=0.3)
    for row in axes:
        row[0].set_ylabel("mean DSC")
    axes[0][-1].legend(fontsize="small", loc="upper right")
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def write_overlays(folder: str | Path, examples: dict[tuple[str, str], dict[str, Example]]) -> list[Path]:
    """Best/worst overlay PNG per (dataset, method); stale PNGs from an earlier run are removed."""
    from synthfm.inference.overlays import write_overlay

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for (dataset, method), slot in sorted(examples.items()):
        for which, ex in sorted(slot.items()):
            path = out / f"{_safe(dataset)}__{_safe(method)}__{which}.png"
            write_overlay(path, render_example(ex))
            written.append(path)
    # only overlays this command names (<dataset>__<method>__best|worst.png): a user's own PNG stays
    for stale in (set(out.glob("*__*__best.png")) | set(out.glob("*__*__worst.png"))) - set(written):
        if stale not in written:
            stale.unlink()
    return written


def render_example(ex: Example) -> np.ndarray:
    """RGB uint8 picture of one evaluated object (:func:`synthfm.inference.overlays.render_overlay`,
    the convention every synthfm picture uses) with a caption naming method, prompt, DSC and object."""
    from synthfm.inference.overlays import render_overlay

    where = ex.case + ("" if ex.slice is None else f" slice {ex.slice}")
    caption = f"{ex.method} {ex.prompt}  DSC {ex.dice:.3f}  {where} {ex.class_name}#{ex.object}"
    return render_overlay(ex.image, ex.pred, ex.clicks.coords, ex.clicks.labels, truth=ex.gt, caption=caption)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
