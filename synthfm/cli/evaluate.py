"""``python evaluate.py``: zero-shot point-prompt evaluation on nnU-Net-layout datasets (see synthfm.evaluation).

Example::

    python evaluate.py --data ../shared/data --method random_walker --method grabcut \\
        --method flood_fill --out /tmp/eval_classical
"""

from __future__ import annotations

import math

import time
from pathlib import Path

import click

from synthfm.errors import UserError


def _settings(values: tuple[str, ...]) -> tuple[tuple[int, int], ...]:
    from synthfm.prompts import DEFAULT_SETTINGS, parse_setting

    if not values:
        return DEFAULT_SETTINGS
    out = []
    for v in values:
        try:
            setting = parse_setting(v)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--prompt") from None
        if setting not in out:
            out.append(setting)
    return tuple(out)


def _check_out_dir(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"--out is a file, not a folder: {out}")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise UserError(f"output folder is not empty (pass --overwrite to replace its files): {out}")
    parent = out.parent if out.parent != Path("") else Path(".")
    if not out.exists() and not parent.is_dir():
        raise UserError(f"parent of the output folder does not exist: {parent}")


@click.command("evaluate", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--data", "data", multiple=True, required=True, type=click.Path(path_type=Path),
              help="A dataset folder (with dataset.json) or a parent folder of datasets; repeatable.")
@click.option("--method", "methods", multiple=True,
              help="random_walker, grabcut, flood_fill, sam, default, or a synthfm .safetensors checkpoint; repeatable. "
                   "Default: default (the shipped model) plus the classical baselines.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Output folder (must be empty unless --overwrite).")
@click.option("--overwrite", is_flag=True, help="Replace the outputs in a non-empty --out folder.")
@click.option("--prompt", "prompts", multiple=True, metavar="P,N",
              help="Prompt setting: P positive and N negative clicks; repeatable. Default: 1,0 3,0 1,2 3,2.")
@click.option("--interactive", type=click.IntRange(min=0, max=100), default=0, show_default=True,
              help="Also run the interactive protocol with this many clicks (0 = off).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the click simulation.")
@click.option("--min-area", type=click.FloatRange(0.0, 1.0), default=0.001, show_default=True,
              help="Smallest object, as a fraction of the image (slice) area.")
@click.option("--nsd-tolerance", type=click.FloatRange(min=0.0), default=2.0, show_default=True,
              help="NSD tolerance in pixels (x in-plane spacing for volumes).")
@click.option("--include-pseudo", is_flag=True, help="Also evaluate datasets whose labels are model predictions.")
@click.option("--limit-objects", type=click.IntRange(min=1), default=None, help="At most this many objects per dataset.")
@click.option("--sam-checkpoint", type=click.Path(path_type=Path), default=None, help="Official SAM .pth: for --method sam, and for synthfm checkpoints that reference a SAM encoder.")
@click.option("--encoder", default=None, help="SAM encoder of --sam-checkpoint: vit_h, vit_l or vit_b.")
@click.option("--device", default="cpu", show_default=True, help="Torch device of network methods.")
@click.option("--no-overlays", is_flag=True, help="Do not write the best/worst overlay PNGs.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def main(data, methods, out, overwrite, prompts, interactive, seed, min_area, nsd_tolerance, include_pseudo,
         limit_objects, sam_checkpoint, encoder, device, no_overlays, quiet) -> None:
    """Evaluate click-promptable segmentation methods zero-shot on real datasets."""
    from synthfm.evaluation.datasets import find_datasets
    from synthfm.evaluation.methods import build_methods
    from synthfm.evaluation.protocol import EvalProtocol, evaluate
    from synthfm.evaluation.report import summary_markdown, write_report

    if not methods:
        from synthfm.evaluation.baselines import CLASSICAL_METHODS

        methods = ("default", *CLASSICAL_METHODS)
    settings = _settings(prompts)
    if not math.isfinite(nsd_tolerance):
        raise UserError(f"--nsd-tolerance must be a finite number of pixels, got {nsd_tolerance}")
    _check_out_dir(out, overwrite)
    datasets, pseudo = find_datasets(list(data), include_pseudo=include_pseudo)
    built = build_methods(list(methods), sam_checkpoint=str(sam_checkpoint) if sam_checkpoint else None,
                          encoder=encoder, device=device)
    protocol = EvalProtocol(settings=settings, seed=seed, min_area=min_area, nsd_tolerance=nsd_tolerance,
                            interactive=interactive, limit_objects=limit_objects, include_pseudo=include_pseudo)
    if pseudo:
        click.echo(f"note: pseudo-label datasets left out (use --include-pseudo): {', '.join(pseudo)}", err=True)
    start = time.perf_counter()
    result = evaluate(datasets, built, protocol, progress=not quiet,
                      warn=lambda msg: click.echo(f"warning: {msg}", err=True), skipped_datasets=pseudo)
    if not result.rows:
        first = result.skipped[0] if result.skipped else None
        why = f"; first skip: {first['dataset']}/{first['case']}: {first['reason']}" if first else ""
        raise UserError(f"no object to evaluate (every case was skipped or had no object above --min-area){why}")
    summary = write_report(out, result, overlays=not no_overlays, overwrite=overwrite)
    elapsed = time.perf_counter() - start
    click.echo(summary_markdown(summary))
    n_objects = sum(d["objects"] for d in result.datasets.values())
    click.echo(f"{n_objects} objects, {len(built)} method(s), {len(protocol.prompt_labels())} prompt(s) in {elapsed:.1f} s; "
               f"skipped {len(result.skipped)} case(s); results in {out}", err=True)

