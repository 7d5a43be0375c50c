"""``synthfm fit-recipe``: a recipe whose synthetic images look like a folder of unlabelled scans."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("fit-recipe")
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--out", "out", required=True, type=click.Path(path_type=Path), help="Recipe YAML to write.")
@click.option("--base", default="synthfm", show_default=True,
              help="Recipe to start from: a shipped name (synthfm, shape_only, boundary_only) or a YAML path.")
@click.option("--modality", default=None,
              help="CT, MR or US: a hint for the intensity window (default: the file's own, or dataset.json's).")
@click.option("--max-images", type=click.IntRange(1, 10_000), default=60, show_default=True,
              help="Analyse at most this many files (evenly chosen).")
@click.option("--overwrite", is_flag=True, help="Replace an existing --out.")
def fit_recipe_command(folder: Path, out: Path, base: str, modality, max_images: int, overwrite: bool) -> None:
    """Measure the appearance of the scans in FOLDER (no labels needed) and write a recipe fitted to it.

    Any format synthfm reads (PNG/JPEG/TIFF/BMP, DICOM, NIfTI/NRRD/MHA volumes); folders named
    labels* are skipped.  Then adapt the model with no labels:
    python train.py --recipe OUT --init default --out RUN
    """
    import json

    from synthfm.errors import UserError
    from synthfm.io.atomic import atomic_write_bytes
    from synthfm.synth.fit_recipe import analysis_images, find_scans, fit, measure, recipe_yaml
    from synthfm.synth.recipe import load_recipe, resolve_recipe_path

    if not folder.is_dir():
        raise UserError(f"not a folder: {folder}")
    if out.exists() and not overwrite:
        raise UserError(f"{out} exists; pass --overwrite to replace it")
    if out.suffix.lower() not in (".yaml", ".yml"):
        raise UserError(f"--out must be a .yaml file, got {out}")
    if not out.parent.is_dir():
        raise UserError(f"folder of --out does not exist: {out.parent}")
    base_recipe = load_recipe(base)
    if modality is None and (folder / "dataset.json").is_file():
        try:
            modality = json.loads((folder / "dataset.json").read_text()).get("modality")
        except (OSError, ValueError, AttributeError):
            modality = None
    paths = find_scans(folder)
    if not paths:
        raise UserError(f"no image or volume synthfm can read in {folder}")
    modality = modality or _file_modality(paths)
    images = analysis_images(paths, modality, max_images)
    if not images:
        raise UserError(f"none of the {len(paths)} file(s) in {folder} could be read as an image")
    stats = [measure(img, name) for name, img in images]
    recipe, changes, summary = fit(stats, base_recipe, modality)
    header = [f"synthfm fit-recipe {folder} (base: {resolve_recipe_path(base)}); {len(paths)} file(s), "
              f"{len(images)} analysed image(s)",
              f"adapt with: python train.py --recipe {out} --init default --out RUN"]
    text = recipe_yaml(recipe, changes, summary, header)
    load_check = _validate(text)
    atomic_write_bytes(out, text.encode("utf-8"))
    click.echo(f"{summary['flavour']}-like scans ({len(images)} images); {len(changes)} recipe key(s) changed; "
               f"wrote {out}{load_check}")
    for c in changes:
        click.echo(f"  {c.key}: {c.old} -> {c.new}  ({c.why})")


def _validate(text: str) -> str:
    import yaml

    from synthfm.synth.recipe import recipe_from_dict

    recipe_from_dict(yaml.safe_load(text), source="fit-recipe output")  # a bug here must not write a bad file
    return ""


def _file_modality(paths) -> str | None:
    """The modality a scan's header states (DICOM), else None; only the first readable file is asked."""
    from synthfm.errors import UserError
    from synthfm.io.images import read_image

    for p in paths[:1]:
        try:
            return read_image(p).modality
        except UserError:
            return None
    return None
