"""Loading is safe: our weights only through safetensors, official SAM files and the training
state only through ``torch.load(weights_only=True)``; a planted pickle never runs its code."""

from __future__ import annotations

import ast
import pickle
from pathlib import Path

import pytest

from bad_inputs.files import malicious_pickle
from synthfm.weights.checkpoint import load_checkpoint, read_metadata
from synthfm.errors import CheckpointError
from synthfm.weights.official_sam import build_model as build_from_sam
from synthfm.weights.official_sam import load_official_state_dict
from synthfm.training.run_folder import LAST_STATE, read_checkpoint

REPO = Path(__file__).resolve().parents[1]
SOURCES = sorted((REPO / "synthfm").rglob("*.py")) + [REPO / "evaluate.py", REPO / "train.py"]


@pytest.fixture(autouse=True)
def unsafe_env(monkeypatch):
    # the escape hatch torch offers must not reopen pickle loading behind our explicit weights_only=True
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")


def test_the_planted_payload_really_runs_when_unpickled(tmp_path):
    """Control: without the safeguards the payload does execute, so the tests below can fail."""
    marker = tmp_path / "PWNED"
    pickle.loads(malicious_pickle(marker, zip_container=False))
    assert marker.exists()


@pytest.mark.parametrize("zip_container", [True, False], ids=["torch_zip", "raw_pickle"])
def test_pickle_posing_as_safetensors_is_refused(tmp_path, zip_container):
    marker = tmp_path / "PWNED"
    path = tmp_path / "model.safetensors"
    path.write_bytes(malicious_pickle(marker, zip_container=zip_container))
    for load in (load_checkpoint, read_metadata):
        with pytest.raises(CheckpointError, match="PyTorch pickle/zip file, not a safetensors checkpoint"):
            load(path)
    assert not marker.exists()


@pytest.mark.parametrize("zip_container", [True, False], ids=["torch_zip", "raw_pickle"])
def test_planted_sam_file_is_refused_without_running_code(tmp_path, zip_container):
    marker = tmp_path / "PWNED"
    path = tmp_path / "my_sam_vit_b.pth"
    path.write_bytes(malicious_pickle(marker, zip_container=zip_container))
    with pytest.raises(CheckpointError, match="refusing to load|cannot read .* as a PyTorch checkpoint"):
        load_official_state_dict(path, "vit_b")
    with pytest.raises(CheckpointError):
        build_from_sam("vit_b", sam_checkpoint=path)
    assert not marker.exists()


def test_planted_training_state_is_refused_without_running_code(tmp_path):
    marker = tmp_path / "PWNED"
    (tmp_path / LAST_STATE).write_bytes(malicious_pickle(marker, zip_container=True))
    with pytest.raises(CheckpointError, match="cannot read training state"):
        read_checkpoint(tmp_path)
    assert not marker.exists()


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node, ast.unparse(node.func)


def test_every_torch_load_in_the_package_is_weights_only():
    found = []
    for path in SOURCES:
        for call, name in _calls(ast.parse(path.read_text(), str(path))):
            if name == "torch.load":
                kw = {k.arg: k.value for k in call.keywords}
                ok = isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True
                assert ok, f"{path.relative_to(REPO)}:{call.lineno}: torch.load without weights_only=True"
                found.append(path.name)
    assert {"official_sam.py", "run_folder.py"} <= set(found)  # the two places that read .pt/.pth files


def test_no_unsafe_deserialiser_in_the_package():
    unsafe = {"pickle.load", "pickle.loads", "pickle.Unpickler", "yaml.load", "yaml.unsafe_load", "yaml.full_load",
              "torch.jit.load", "dill.load", "joblib.load", "marshal.loads"}
    for path in SOURCES:
        for call, name in _calls(ast.parse(path.read_text(), str(path))):
            assert name not in unsafe, f"{path.relative_to(REPO)}:{call.lineno}: {name}"
            if name in ("np.load", "numpy.load"):
                kw = {k.arg: k.value for k in call.keywords}
                assert not (isinstance(kw.get("allow_pickle"), ast.Constant) and kw["allow_pickle"].value), path


def test_our_checkpoints_are_written_as_safetensors(tmp_path):
    from synthfm.weights.checkpoint import save_checkpoint
    from synthfm.modeling import build_model

    path = tmp_path / "m.safetensors"
    save_checkpoint(path, build_model("tiny_cnn", image_size=64))
    head = path.read_bytes()[:16]
    assert not head.startswith(b"PK") and head[8:9] == b"{"  # u64 header length, then the JSON header
    model, meta = load_checkpoint(path)
    assert meta["format"] == "synthfm" and model.encoder_name == "tiny_cnn"
