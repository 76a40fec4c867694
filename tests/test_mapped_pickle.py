"""Warehouse values whose arrays are memory-mapped on load."""
import pickle

import numpy as np
import scipy.sparse as sp

from visrec_pipelines import mapped_pickle
from visrec_pipelines.atomic import write_atomically


def test_arrays_come_back_equal_mapped_and_private_to_the_reader(tmp_path):
    value = {"features": np.random.default_rng(0).random((300, 7), dtype=np.float32),
             "users": np.arange(1001, dtype=np.int64), "matrix": sp.random(50, 40, density=0.1, format="csr"),
             "ragged": [np.arange(3), np.arange(5, 10, dtype=np.int16)], "name": "split", "empty": np.zeros(0)}
    path = write_atomically(tmp_path / "split.pkl", lambda f: mapped_pickle.dump(value, f))
    loaded = mapped_pickle.load(path)
    np.testing.assert_array_equal(loaded["features"], value["features"])
    np.testing.assert_array_equal(loaded["users"], value["users"])
    assert (loaded["matrix"] != value["matrix"]).nnz == 0 and loaded["name"] == "split"
    assert [a.tolist() for a in loaded["ragged"]] == [[0, 1, 2], [5, 6, 7, 8, 9]] and loaded["empty"].size == 0
    assert not loaded["features"].flags.owndata and not loaded["users"].flags.owndata   # views of the mapping

    loaded["users"][:] = -1                                   # a reader may write: only its own copy changes
    np.testing.assert_array_equal(mapped_pickle.load(path)["users"], value["users"])


def test_plain_pickles_of_older_warehouses_still_load(tmp_path):
    (tmp_path / "old.pkl").write_bytes(pickle.dumps({"a": np.arange(4)}))
    assert mapped_pickle.load(tmp_path / "old.pkl")["a"].tolist() == [0, 1, 2, 3]
