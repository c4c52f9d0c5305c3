from __future__ import annotations

import numpy as np
import pytest

from facemodel.gallery import Gallery


def unit(rng, dim=128):
    vector = rng.standard_normal(dim).astype(np.float32)
    return vector / np.linalg.norm(vector)


def test_identify_returns_the_nearest_subjects_best_first():
    rng = np.random.default_rng(7)
    gallery = Gallery(128, embedding_space="sface-2021dec", capacity=2)
    vectors = {f"member-{n}": unit(rng) for n in range(100)}
    for subject, vector in vectors.items():
        gallery.upsert(subject, vector)
    probe = vectors["member-42"] + 0.05 * unit(rng)
    matches = gallery.identify(probe, k=3)
    assert matches[0].subject == "member-42"
    assert matches[0].similarity > 0.99
    assert matches[0].similarity >= matches[1].similarity >= matches[2].similarity
    assert len(gallery) == 100


def test_remove_keeps_rows_contiguous_and_others_findable():
    rng = np.random.default_rng(1)
    gallery = Gallery(128, embedding_space="x")
    vectors = {f"m{n}": unit(rng) for n in range(10)}
    for subject, vector in vectors.items():
        gallery.upsert(subject, vector)
    assert gallery.remove("m3")
    assert not gallery.remove("m3")
    assert "m3" not in gallery
    for subject, vector in vectors.items():
        if subject != "m3":
            assert gallery.identify(vector)[0].subject == subject
    assert gallery.verify("m9", vectors["m9"]) == pytest.approx(1.0, abs=1e-5)
    assert gallery.verify("m3", vectors["m3"]) is None


def test_upsert_replaces_a_subjects_vector():
    rng = np.random.default_rng(2)
    gallery = Gallery(128, embedding_space="x")
    first, second = unit(rng), unit(rng)
    gallery.upsert("m", first)
    gallery.upsert("m", second)
    assert len(gallery) == 1
    assert gallery.verify("m", second) == pytest.approx(1.0, abs=1e-5)


def test_bad_vectors_are_refused():
    gallery = Gallery(128, embedding_space="x")
    with pytest.raises(ValueError, match="128-d"):
        gallery.upsert("m", np.ones(64, np.float32))
    with pytest.raises(ValueError, match="zero or not finite"):
        gallery.upsert("m", np.zeros(128, np.float32))
    with pytest.raises(ValueError, match="zero or not finite"):
        gallery.upsert("m", np.full(128, np.nan, np.float32))
    assert gallery.identify(np.ones(128, np.float32)) == []
