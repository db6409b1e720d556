"""VectorIndex: flat and HNSW, search, copy-on-write changes, removal, kind switch, save/load."""

from __future__ import annotations

import numpy as np
import pytest

from service.corpus.index import VectorIndex, write_atomically


def unit(n: int, d: int = 16, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize(("threshold", "kind"), [(1000, "flat"), (10, "hnsw")])
def test_build_and_search_finds_each_vector_itself(threshold, kind):
    vectors = unit(200)
    ids = np.arange(1000, 1200, dtype=np.int64)
    index = VectorIndex.build(ids, vectors, dimension=16, hnsw_threshold=threshold)
    assert index.kind == kind and len(index) == 200
    scores, found = index.search(vectors[:20], 3)
    assert (found[:, 0] == ids[:20]).all()
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-5)
    assert (np.diff(scores, axis=1) <= 1e-6).all()  # best first


def test_flat_search_is_exact():
    vectors = unit(300, seed=1)
    index = VectorIndex.build(np.arange(300, dtype=np.int64), vectors, dimension=16, hnsw_threshold=10_000)
    query = unit(1, seed=2)
    _, found = index.search(query, 5)
    expected = np.argsort(-(vectors @ query[0]))[:5]
    assert found[0].tolist() == expected.tolist()


@pytest.mark.parametrize("threshold", [1000, 10])
def test_with_changes_leaves_the_original_untouched(threshold):
    vectors = unit(50)
    index = VectorIndex.build(np.arange(50, dtype=np.int64), vectors, dimension=16, hnsw_threshold=threshold)
    changed = index.with_changes(remove=[0, 1], add_ids=np.array([100], np.int64), add_vectors=unit(1, seed=9),
                                 hnsw_threshold=threshold)
    assert len(index) == 50 and len(changed) == 49
    _, found = index.search(vectors[:1], 1)
    assert found[0, 0] == 0  # the old snapshot still has it
    _, found = changed.search(vectors[:2], 5)
    assert 0 not in found[0] and 1 not in found[1]  # removed (tombstoned in HNSW) in the new one
    _, found = changed.search(unit(1, seed=9), 1)
    assert found[0, 0] == 100


def test_hnsw_tombstones_are_compacted():
    vectors = unit(40)
    index = VectorIndex.build(np.arange(40, dtype=np.int64), vectors, dimension=16, hnsw_threshold=10)
    few = index.with_changes(remove=[0], add_ids=np.zeros(0, np.int64), add_vectors=np.zeros((0, 16), np.float32),
                             hnsw_threshold=10)
    assert few.deleted == frozenset({0}) and few.kind == "hnsw"
    many = few.with_changes(remove=range(1, 12), add_ids=np.zeros(0, np.int64),
                            add_vectors=np.zeros((0, 16), np.float32), hnsw_threshold=10)
    assert many.deleted == frozenset() and len(many) == 28  # rebuilt without the removed vectors
    ids, _ = many.items()
    assert sorted(ids.tolist()) == list(range(12, 40))


def test_kind_follows_the_threshold_both_ways():
    index = VectorIndex.build(np.arange(8, dtype=np.int64), unit(8), dimension=16, hnsw_threshold=10)
    assert index.kind == "flat"
    grown = index.with_changes(remove=[], add_ids=np.arange(8, 16, dtype=np.int64), add_vectors=unit(8, seed=3),
                               hnsw_threshold=10)
    assert grown.kind == "hnsw" and len(grown) == 16
    shrunk = grown.with_changes(remove=range(10), add_ids=np.zeros(0, np.int64),
                                add_vectors=np.zeros((0, 16), np.float32), hnsw_threshold=10)
    assert shrunk.kind == "flat" and len(shrunk) == 6


def test_search_asks_for_more_than_there_is():
    index = VectorIndex.build(np.arange(3, dtype=np.int64), unit(3), dimension=16, hnsw_threshold=10)
    scores, found = index.search(unit(2, seed=5), 10)
    assert found.shape == (2, 3)
    empty = VectorIndex.build(np.zeros(0, np.int64), np.zeros((0, 16), np.float32), dimension=16, hnsw_threshold=10)
    assert empty.search(unit(1), 5)[1].shape == (1, 0)


@pytest.mark.parametrize("threshold", [1000, 10])
def test_save_and_load_round_trip(tmp_path, threshold):
    vectors = unit(60)
    index = VectorIndex.build(np.arange(60, dtype=np.int64), vectors, dimension=16, hnsw_threshold=threshold)
    index = index.with_changes(remove=[5], add_ids=np.zeros(0, np.int64), add_vectors=np.zeros((0, 16), np.float32),
                               hnsw_threshold=threshold)
    path = tmp_path / "c.faiss"
    index.save(path)
    loaded = VectorIndex.load(path, deleted=index.deleted)
    assert (loaded.kind, loaded.dimension, len(loaded)) == (index.kind, 16, 59)
    np.testing.assert_array_equal(loaded.search(vectors[:10], 3)[1], index.search(vectors[:10], 3)[1])
    assert [p.name for p in tmp_path.iterdir()] == ["c.faiss"]  # no temporary file left behind


def test_atomic_write_replaces_whole_files(tmp_path):
    path = tmp_path / "f.bin"
    write_atomically(path, b"old")
    write_atomically(path, b"new content")
    assert path.read_bytes() == b"new content"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]


@pytest.mark.parametrize("threshold", [1000, 10])
def test_removing_unknown_or_repeated_ids_changes_nothing(threshold):
    index = VectorIndex.build(np.arange(20, dtype=np.int64), unit(20), dimension=16, hnsw_threshold=threshold)
    none = np.zeros(0, np.int64), np.zeros((0, 16), np.float32)
    once = index.with_changes(remove=[3, 999], add_ids=none[0], add_vectors=none[1], hnsw_threshold=threshold)
    twice = once.with_changes(remove=[3], add_ids=none[0], add_vectors=none[1], hnsw_threshold=threshold)
    assert len(once) == len(twice) == 19
    assert twice.search(unit(1, seed=4), 50)[1].shape == (1, 19)
