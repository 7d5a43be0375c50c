"""Issue 18, the second hardening round: the corpus in tests/bad_inputs/corpus_round2.py (same
contract and runner as tests/test_bad_inputs.py), plus the checks that need a real training run,
a race or the viewer: --overwrite replaces a run only after the new one committed, --resume
refuses config/weights of different runs, exclusive creation, the napari save on a full disk.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from bad_inputs.corpus import CASES, corpus_table
from bad_inputs.corpus_round2 import CASES2
from test_bad_inputs import assets, check_case  # noqa: F401  (assets is a fixture)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("case", CASES2, ids=[c.name for c in CASES2])
def test_bad_input_round2(case, assets, tmp_path, capsys, monkeypatch):  # noqa: F811
    check_case(case, assets, tmp_path, capsys, monkeypatch)


def test_corpus_grew_to_150_distinct_cases():
    names = [c.name for c in CASES + CASES2]
    assert len(names) == len(set(names)) and len(names) >= 150
    assert {c.command for c in CASES2} >= {"segment", "generate", "export-onnx", "annotate", "evaluate", "train"}
    assert sum(c.in_subprocess for c in CASES2) <= 2  # the rest run in-process (fast)
    assert corpus_table(cases=CASES2).count("\n") == len(CASES2) + 1


def _tiny(out: Path, **kw):
    from synthfm.training.config import preset_config

    base = dict(out=str(out), epochs=1, images_per_epoch=2, batch_size=1, prompts_per_image=1, val_images=0, seed=3,
                workers=0, checkpoint_every=0, log_every=1)
    base.update(kw)
    return preset_config("tiny", **base)


def test_overwrite_drops_the_old_run_only_after_the_first_commit(tmp_path, monkeypatch):
    import synthfm.training.loop as loop
    from synthfm.training.run_folder import LAST_WEIGHTS, sha256_file, write_checkpoint
    from synthfm.training.run_guard import PREVIOUS_RUN

    run = tmp_path / "run"
    loop.train(_tiny(run, seed=1), progress=False)
    old = sha256_file(run / LAST_WEIGHTS)
    seen = []

    def spy(out, *args, **kwargs):
        seen.append((run / PREVIOUS_RUN / LAST_WEIGHTS).is_file())  # the old run is still set aside here
        return write_checkpoint(out, *args, **kwargs)

    monkeypatch.setattr(loop, "write_checkpoint", spy)
    loop.train(_tiny(run, seed=2), overwrite=True, progress=False)
    assert seen == [True]
    assert not (run / PREVIOUS_RUN).exists() and sha256_file(run / LAST_WEIGHTS) != old
    assert json.loads((run / "config.json").read_text())["config"]["seed"] == 2


def test_overwrite_crash_before_commit_restores_the_old_run(tmp_path, monkeypatch):
    import synthfm.training.loop as loop
    from synthfm.training.run_folder import sha256_file

    run = tmp_path / "run"
    loop.train(_tiny(run, seed=1), progress=False)
    before = {p.name: sha256_file(p) for p in run.iterdir() if p.is_file()}

    def crash(*args, **kwargs):
        raise MemoryError("simulated OOM at the first step")

    monkeypatch.setattr(loop, "optimizer_step", crash)
    with pytest.raises(MemoryError):
        loop.train(_tiny(run, seed=2), overwrite=True, progress=False)
    assert {p.name: sha256_file(p) for p in run.iterdir() if p.is_file()} == before
    assert sorted(p.name for p in run.iterdir()) == sorted(before) + (["tb"] if (run / "tb").exists() else [])


def test_killed_overwrite_keeps_the_set_aside_run_for_the_next_overwrite(tmp_path):
    import synthfm.training.loop as loop
    from synthfm.training.run_folder import LAST_WEIGHTS
    from synthfm.training.run_guard import PREVIOUS_RUN

    run = tmp_path / "run"
    loop.train(_tiny(run, seed=1), progress=False)
    # as a SIGKILL after the move aside leaves it: the old run in .previous-run, a new config.json
    (run / PREVIOUS_RUN).mkdir()
    for name in ("config.json", LAST_WEIGHTS, "last_state.pt", "log.csv"):
        os.replace(run / name, run / PREVIOUS_RUN / name)
    (run / "config.json").write_text("{}")
    from synthfm.errors import UserError

    with pytest.raises(UserError, match=r"\.previous-run/, a run set aside"):
        loop.train(_tiny(run, seed=2), progress=False)
    loop.train(_tiny(run, seed=2), overwrite=True, progress=False)
    assert not (run / PREVIOUS_RUN).exists() and (run / LAST_WEIGHTS).is_file()


def test_resume_refuses_config_and_weights_of_different_runs(tmp_path):
    import synthfm.training.loop as loop
    from synthfm.errors import CheckpointError

    a, b = tmp_path / "a", tmp_path / "b"
    loop.train(_tiny(a, seed=1, epochs=2), stop_after_steps=1, progress=False)
    loop.train(_tiny(b, seed=2, epochs=2), stop_after_steps=1, progress=False)
    (a / "config.json").write_bytes((b / "config.json").read_bytes().replace(str(b).encode(), str(a).encode()))
    with pytest.raises(CheckpointError, match=r"config\.json and last\.safetensors come from different runs \(seed"):
        loop.train(loop.resume_config(a), resume=True, progress=False)


def test_two_runs_creating_the_same_new_file_cannot_both_succeed(tmp_path):
    from synthfm.errors import UserError
    from synthfm.io.atomic import atomic_write_bytes

    target = tmp_path / "mask.txt"
    with pytest.raises(UserError, match="another run wrote it meanwhile"):
        from synthfm.io.atomic import atomic_output

        with atomic_output(target, exclusive=True) as tmp:
            tmp.write_bytes(b"mine")
            target.write_bytes(b"the other run's")  # the other run finished first
    assert target.read_bytes() == b"the other run's" and sorted(os.listdir(tmp_path)) == ["mask.txt"]
    atomic_write_bytes(tmp_path / "new.txt", b"x", exclusive=True)
    assert (tmp_path / "new.txt").read_bytes() == b"x"


def test_segment_without_overwrite_does_not_replace_a_file_that_appeared(assets, tmp_path, monkeypatch):  # noqa: F811
    from synthfm.cli import cli
    from synthfm.cli.support import run_click
    from synthfm.inference.predictor import Predictor

    out = tmp_path / "mask.png"
    real = Predictor.predict

    def racing_predict(self, *args, **kwargs):
        out.write_bytes(b"written by a concurrent run")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Predictor, "predict", racing_predict)
    code = run_click(cli, ["segment", str(assets.png), "--point", "20,20", "--model", str(assets.model), "--out", str(out)],
                     prog_name="synthfm")
    assert code != 0 and out.read_bytes() == b"written by a concurrent run"


def test_viewer_save_on_a_full_disk_keeps_the_label_map(tmp_path, monkeypatch):
    """The napari widget saves through AnnotationSession.save -> write_mask: a writer that silently
    writes nothing must not replace the hand-made label map."""
    import SimpleITK as sitk

    from synthfm.errors import UserError
    from synthfm.io.images import read_image
    from synthfm.viewer.session import AnnotationSession

    vol = np.zeros((4, 32, 32), np.int16)
    src = tmp_path / "vol.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(vol), str(src))
    labels = tmp_path / "labels.nii.gz"
    labels.write_bytes(b"hand-made label map")
    session = AnnotationSession.__new__(AnnotationSession)  # no predictor needed to save
    session.image = read_image(src)
    session.labels = np.zeros(vol.shape, np.uint8)
    session.labels[1, 5:9, 5:9] = 1
    session._say = lambda msg: None
    monkeypatch.setattr(sitk, "WriteImage", lambda img, path, *a, **k: Path(path).write_bytes(b""))
    with pytest.raises(UserError, match="wrote an empty file"):
        session.save(labels)
    assert labels.read_bytes() == b"hand-made label map"
    assert sorted(os.listdir(tmp_path)) == ["labels.nii.gz", "vol.nii.gz"]


def test_unprivileged_user_cannot_read_input(assets, tmp_path):  # noqa: F811
    """An input the user may not read: one line.  Needs a non-root process (root ignores modes)."""
    if os.geteuid() == 0:
        pytest.skip("running as root, which ignores file permissions (no unprivileged user used here)")
    from synthfm.cli import cli
    from synthfm.cli.support import run_click

    secret = tmp_path / "secret.png"
    secret.write_bytes(assets.png.read_bytes())
    secret.chmod(0)
    code = run_click(cli, ["segment", str(secret), "--point", "20,20", "--model", str(assets.model),
                           "--out", str(tmp_path / "m.png")], prog_name="synthfm")
    assert code != 0


def test_generate_into_a_new_folder_does_not_replace_another_runs_samples(tmp_path, monkeypatch):
    import synthfm.synth.export as export
    from synthfm.errors import UserError
    from synthfm.synth.recipe import load_recipe

    out = tmp_path / "synth"
    real = export.save_gallery

    def racing_gallery(path, *args, **kwargs):
        (out / "targets.json").write_text('{"written": "by the other run"}')  # the other run finished first
        return real(path, *args, **kwargs)

    monkeypatch.setattr(export, "save_gallery", racing_gallery)
    with pytest.raises(UserError, match="targets.json from another run meanwhile"):
        export.write_dataset(load_recipe("synthfm"), out, 1, 64)
    assert json.loads((out / "targets.json").read_text()) == {"written": "by the other run"}
    assert not list(out.glob(".synthfm-generate-*"))


def test_an_empty_payload_is_written_and_a_short_write_is_refused(tmp_path, monkeypatch):
    """atomic_write_bytes: b"" is a valid file (a CSV with no rows); fewer bytes than given is not."""
    from synthfm.io.atomic import atomic_write_bytes
    from synthfm.io.verify import WriteVerifyError

    target = tmp_path / "rows.csv"
    atomic_write_bytes(target, b"")
    assert target.is_file() and target.stat().st_size == 0
    target.write_bytes(b"old")
    real_open = open

    class _Short:
        def __init__(self, fh):
            self.fh = fh

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

        def write(self, data):
            return self.fh.write(data[: len(data) // 2])

        def flush(self):
            self.fh.flush()

        def fileno(self):
            return self.fh.fileno()

    monkeypatch.setattr("builtins.open", lambda f, mode="r", *a, **k: _Short(real_open(f, mode, *a, **k))
                        if "w" in mode else real_open(f, mode, *a, **k))
    with pytest.raises(WriteVerifyError, match="of 4 bytes written"):
        atomic_write_bytes(target, b"abcd")
    monkeypatch.undo()
    assert target.read_bytes() == b"old"
