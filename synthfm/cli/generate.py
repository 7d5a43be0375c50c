"""``synthfm generate``: write a folder of synthetic training samples from a recipe."""

from __future__ import annotations

import click

from synthfm.errors import UserError


MAX_SIZE = 4096  # one 4096 px sample already takes seconds and ~1 GB while it is made
MAX_SAMPLES = 10_000_000


@click.command("generate")
@click.option("--recipe", default="synthfm", show_default=True, help="Recipe YAML path or bare name of a shipped recipe (synthfm, shape_only, boundary_only).")
@click.option("-n", "--num", "n", type=int, default=64, show_default=True, help="Number of samples.")
@click.option("--size", type=int, default=1024, show_default=True, help="Image side in pixels (>= 32).")
@click.option("--seed", type=int, default=0, show_default=True, help="Run seed; sample i is a function of (recipe, seed, i).")
@click.option("--workers", type=int, default=1, show_default=True, help="Worker processes.")
@click.option("--out", "out", required=True, type=click.Path(file_okay=True, dir_okay=True), help="Output folder.")
@click.option("--overwrite", is_flag=True, help="Replace the samples of a non-empty output folder.")
def generate(recipe: str, n: int, size: int, seed: int, workers: int, out: str, overwrite: bool) -> None:
    """Generate N synthetic samples into OUT: images/, labels/ (16-bit), targets.json, gallery.png."""
    if n <= 0:
        raise UserError(f"-n must be > 0, got {n}")
    if size < 32:
        raise UserError(f"--size must be >= 32, got {size}")
    if size > MAX_SIZE:
        raise UserError(f"--size must be at most {MAX_SIZE}, got {size}")
    if n > MAX_SAMPLES:
        raise UserError(f"-n must be at most {MAX_SAMPLES}, got {n}")
    if workers > 256:
        raise UserError(f"--workers must be at most 256, got {workers}")
    if seed >= 2**63:
        raise UserError(f"--seed must be below 2**63, got {seed}")
    if workers < 1:
        raise UserError(f"--workers must be >= 1, got {workers}")
    if seed < 0:
        raise UserError(f"--seed must be >= 0, got {seed}")

    from pathlib import Path

    from tqdm import tqdm

    from synthfm.synth.export import check_output_folder, write_dataset
    from synthfm.synth.memory import keep_freed_memory
    from synthfm.synth.recipe import load_recipe

    loaded = load_recipe(recipe)
    check_output_folder(Path(out), overwrite)
    keep_freed_memory()  # this process only generates from here on
    with tqdm(total=n, unit="img", desc="generate", dynamic_ncols=True, disable=None) as bar:
        manifest = write_dataset(loaded, out, n, size, seed=seed, workers=workers, overwrite=overwrite, progress=bar.update)
    click.echo(f"wrote {n} samples of recipe {loaded.name!r} to {Path(out)} ({manifest.name}, gallery.png)")
