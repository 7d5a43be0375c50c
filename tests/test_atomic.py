"""A failed write never replaces the previous file."""

import os

import pytest

from synthfm.io.atomic import atomic_output, atomic_write_bytes, check_writable_output
from synthfm.errors import UserError


def test_atomic_output_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "mask.png"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_output(target) as tmp:
            assert tmp.suffix == ".png" and tmp.parent == tmp_path
            tmp.write_bytes(b"half")
            raise RuntimeError("boom")
    assert target.read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["mask.png"]


def test_atomic_write_replaces_on_success(tmp_path):
    import gzip

    target = tmp_path / "vol.nii.gz"
    atomic_write_bytes(target, gzip.compress(b"new"))  # written files are verified: real gzip data
    assert gzip.decompress(target.read_bytes()) == b"new"
    with atomic_output(target) as tmp:
        assert "".join(tmp.suffixes).endswith(".nii.gz")
        tmp.write_bytes(gzip.compress(b"newer"))
    assert gzip.decompress(target.read_bytes()) == b"newer"


def test_check_writable_output(tmp_path):
    (tmp_path / "exists.png").write_bytes(b"x")
    with pytest.raises(UserError, match="exists"):
        check_writable_output(tmp_path / "exists.png", overwrite=False)
    assert check_writable_output(tmp_path / "exists.png", overwrite=True)
    with pytest.raises(UserError, match="does not exist"):
        check_writable_output(tmp_path / "missing" / "m.png")
    with pytest.raises(UserError, match="folder"):
        check_writable_output(tmp_path)


def test_atomic_output_has_normal_permissions(tmp_path):
    target = tmp_path / "out.txt"
    atomic_write_bytes(target, b"x")
    mask = os.umask(0o022)
    os.umask(mask)
    assert (target.stat().st_mode & 0o777) == (0o666 & ~mask)
