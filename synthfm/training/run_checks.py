"""Checks of a training run's inputs that read files, done before the run folder is touched.

* :func:`check_run_inputs`: ``--sam-checkpoint`` and ``--init`` are regular, non-empty files of
  the right kind (a FIFO, an empty or random-bytes file is refused here, not after the previous
  run was set aside).
* :func:`check_same_run`: on ``--resume``, ``config.json`` and the committed weights must come
  from the same run (the weights record the config they were trained with).
"""

from __future__ import annotations

from pathlib import Path

from synthfm.errors import CheckpointError, UserError

# fields that are derived when the run starts, or may change on --resume
_DERIVED = {"size", "gen_size", "train_encoder", "amp"}


def check_run_inputs(config) -> None:
    from synthfm.io.safe_inputs import check_regular_file

    if config.sam_checkpoint is not None:
        path = Path(config.sam_checkpoint)
        st = check_regular_file(path, "--sam-checkpoint file", error=UserError)
        with open(path, "rb") as fh:
            head = fh.read(4)
        if st.st_size == 0 or not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):
            raise UserError(f"--sam-checkpoint {path} is not a PyTorch .pth file (official SAM checkpoints are)")
    if config.init is not None:
        from synthfm.weights.checkpoint import read_metadata
        from synthfm.weights.source import resolve_model

        path = resolve_model(config.init)  # "default" is the shipped file, not a path in the cwd
        check_regular_file(path, "--init checkpoint", error=UserError)
        read_metadata(path)


def check_same_run(out: Path, weights: Path) -> None:
    """Raise CheckpointError when ``out/config.json`` and ``weights`` belong to different runs."""
    from synthfm.training.config import RESUMABLE_OVERRIDES
    from synthfm.training.run_folder import read_run_config
    from synthfm.weights.checkpoint import read_metadata

    saved = read_run_config(out)
    meta = read_metadata(weights)
    trained = meta.get("train_config")
    if not isinstance(trained, dict):
        return  # weights from before train_config was recorded
    skip = set(RESUMABLE_OVERRIDES) | _DERIVED
    differ = sorted(k for k in set(saved["config"]) | set(trained)
                    if k not in skip and saved["config"].get(k) != trained.get(k))
    recipe = meta.get("recipe")
    if isinstance(recipe, dict) and isinstance(saved.get("recipe"), dict) and recipe != saved["recipe"]:
        differ.append("recipe")
    if differ:
        shown = ", ".join(f"{k} ({saved['config'].get(k)!r} vs {trained.get(k)!r})" if k != "recipe" else "recipe"
                          for k in differ[:3])
        raise CheckpointError(f"{out}: config.json and {weights.name} come from different runs ({shown}); "
                              "restore the run's own config.json")
