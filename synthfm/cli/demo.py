"""``python -m synthfm.cli.demo --out demo_out``: one click on a real scan with the shipped model.

Picks a real image with ground truth from ``../shared/data`` (CT spleen, then the other 2D sets;
``--data`` or ``SYNTHFM_DATA`` point elsewhere), places one positive click where a user would (the
object's interior point farthest from its boundary, as ``synthfm.prompts`` does), segments with the
default model and writes ``<out>/overlay.png`` (drawn like every synthfm overlay, with a legend:
:mod:`synthfm.inference.overlays`) and the Dice it reached.  Without the data folder it segments a generated synthetic
sample instead.  It also writes ``<out>/gallery.png``: samples of the default recipe, i.e. what the
model was trained on.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np

from synthfm.cli.support import exit_with

DEMO_SAMPLES = 8
DEMO_SIZE = 256
# 2D development sets tried in this order (the first that exists is used).
DEMO_DATASETS = ("CT_SpleenMSD", "CT_KidneyKiTS19", "MRI_LeftAtriumMSD", "US_BreastLesionBUSI")


@dataclass
class DemoCase:
    """image: (H, W) uint8 grey or (H, W, 3) RGB; gt: (H, W) bool; source: where it came from."""

    image: np.ndarray
    gt: np.ndarray
    source: str


def default_data_folder() -> Path:
    """``$SYNTHFM_DATA`` or ``../shared/data`` next to the repository."""
    env = os.environ.get("SYNTHFM_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[3] / "shared" / "data"


def real_case(data: Path) -> DemoCase | None:
    """The first case of the first available demo dataset, its largest object as ground truth."""
    import cv2

    for name in DEMO_DATASETS:
        images = sorted((data / name / "imagesTs").glob("*_0000.png"))
        if not images:
            continue
        image_path = images[0]
        label_path = data / name / "labelsTs" / image_path.name.replace("_0000.png", ".png")
        image = cv2.imread(str(image_path), cv2.IMREAD_UNCHANGED)
        label = cv2.imread(str(label_path), cv2.IMREAD_UNCHANGED)
        if image is None or label is None or label.max() == 0:
            continue
        if image.ndim == 3:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        return DemoCase(image, largest_component(label > 0), f"{name}/{image_path.name}")
    return None


def synthetic_case(seed: int) -> DemoCase:
    """A generated sample and its first valid target (used when no real data is available)."""
    from synthfm.synth.generator import sample_at
    from synthfm.synth.recipe import default_recipe

    index = 0
    while True:
        sample = sample_at(default_recipe(), seed + 1, index, DEMO_SIZE)
        if sample.valid_targets:
            image = np.clip(sample.image * 255.0 + 0.5, 0, 255).astype(np.uint8)
            return DemoCase(image, sample.target_mask(sample.valid_targets[0]), f"synthetic sample {index}")
        index += 1


def largest_component(mask: np.ndarray) -> np.ndarray:
    import cv2

    n, comp, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 1:
        return mask.astype(bool)
    return comp == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))


def run_demo(case: DemoCase, model: str, folder: Path, seed: int) -> dict:
    """Segment ``case`` from one click; write the overlay; return a summary dict."""
    from synthfm.inference.overlays import render_overlay, write_overlay
    from synthfm.evaluation.metrics import dice
    from synthfm.inference.predictor import Predictor
    from synthfm.prompts import simulate_clicks

    predictor = Predictor.from_checkpoint(model)
    predictor.set_image(case.image, preset="none")
    clicks = simulate_clicks(case.gt, 1, 0, np.random.default_rng(seed))
    masks, scores, _ = predictor.predict(clicks.coords, clicks.labels)
    pred = masks[0]
    score = dice(case.gt, pred)
    picture = render_overlay(predictor.image_uint8, pred, clicks.coords, clicks.labels, None, truth=case.gt,
                             caption=f"{case.source}: one click, Dice {score:.3f}")
    overlay = folder / "overlay.png"
    write_overlay(overlay, picture)
    return {
        "source": case.source,
        "click_xy": [float(v) for v in clicks.coords[0]],
        "dice": float(score),
        "overlay": str(overlay),
    }


@click.command("demo")
@click.option("--out", default="demo_out", show_default=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--model", default="default", show_default=True, help="Checkpoint path or 'default'.")
@click.option("--data", default=None, help="Folder of nnU-Net datasets (default: ../shared/data or $SYNTHFM_DATA).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the click and the gallery.")
def demo(out: str, model: str, data: str | None, seed: int) -> None:
    """Segment a real image from one click with the default model; write overlay and gallery."""
    from synthfm.io.atomic import atomic_write_bytes
    from synthfm.errors import UserError
    from synthfm.synth.gallery import save_gallery
    from synthfm.synth.generator import sample_at
    from synthfm.synth.recipe import default_recipe

    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"--out exists and is not a folder: {folder}")
    folder.mkdir(parents=True, exist_ok=True)

    case = real_case(Path(data) if data else default_data_folder()) or synthetic_case(seed)
    summary = run_demo(case, model, folder, seed)
    atomic_write_bytes(folder / "demo.json", json.dumps(summary, indent=2).encode())
    click.echo(f"segmented {summary['source']} from one click at ({summary['click_xy'][0]:.0f}, "
               f"{summary['click_xy'][1]:.0f}): Dice {summary['dice']:.3f} vs. ground truth -> {summary['overlay']}")

    recipe = default_recipe()
    samples = [sample_at(recipe, seed, i, DEMO_SIZE) for i in range(DEMO_SAMPLES)]
    titles = [f"{i}: {s.module}/{s.flavour}, {len(s.valid_targets)} targets" for i, s in enumerate(samples)]
    path = save_gallery(folder / "gallery.png", samples, titles)
    click.echo(f"wrote {len(samples)} synthetic training samples ({DEMO_SIZE} px, recipe {recipe.name!r}) to {path}")


def main() -> None:
    exit_with(demo, prog_name="synthfm.cli.demo")


if __name__ == "__main__":
    main()
