"""write_atomically: the old file or the new one, never a torn one, and no leftovers."""
import numpy as np
import pytest

from visrec_pipelines.atomic import write_atomically


def test_text_bytes_and_writer_functions(tmp_path):
    assert write_atomically(tmp_path / "a" / "x.json", '{"a": 1}').read_text() == '{"a": 1}'
    assert write_atomically(tmp_path / "y.bin", b"\x00\x01").read_bytes() == b"\x00\x01"
    path = write_atomically(tmp_path / "z.npz", lambda f: np.savez(f, v=np.arange(3)))
    assert path.name == "z.npz" and np.load(path)["v"].tolist() == [0, 1, 2]


def test_a_failing_writer_leaves_the_old_file_and_no_temporary(tmp_path):
    target = write_atomically(tmp_path / "state.json", "old")

    def broken(handle):
        handle.write(b"half")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        write_atomically(target, broken)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["state.json"]
