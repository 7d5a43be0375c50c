"""``python -m synthfm.demo --out demo_out``: a quick look at what the synthetic engine makes.

Generates 8 samples of the default recipe at 256 px and writes ``<out>/gallery.png`` with the
outlines of their valid targets.
"""

from __future__ import annotations

from pathlib import Path

import click

from synthfm.cli_support import exit_with

DEMO_SAMPLES = 8
DEMO_SIZE = 256


@click.command("demo")
@click.option("--out", default="demo_out", show_default=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--seed", type=int, default=0, show_default=True, help="Run seed.")
def demo(out: str, seed: int) -> None:
    """Write a gallery of synthetic samples of the default recipe."""
    from synthfm.errors import UserError
    from synthfm.synth.gallery import save_gallery
    from synthfm.synth.generator import sample_at
    from synthfm.synth.recipe import default_recipe

    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"--out exists and is not a folder: {folder}")
    folder.mkdir(parents=True, exist_ok=True)
    recipe = default_recipe()
    samples = [sample_at(recipe, seed, i, DEMO_SIZE) for i in range(DEMO_SAMPLES)]
    titles = [f"{i}: {s.module}/{s.flavour}, {len(s.valid_targets)} targets" for i, s in enumerate(samples)]
    path = save_gallery(folder / "gallery.png", samples, titles)
    click.echo(f"wrote {len(samples)} synthetic samples ({DEMO_SIZE} px, recipe {recipe.name!r}) to {path}")


def main() -> None:
    exit_with(demo, prog_name="synthfm.demo")


if __name__ == "__main__":
    main()
