"""Pickles whose numpy arrays are memory-mapped on load.

A split of a large shop (interactions, item features, sparse attributes) is mostly a few big numpy
arrays, and every ranker step loads it. A plain pickle copies all of it into each process's memory
and spends seconds deserialising it. Here the arrays are written out of band (pickle protocol 5) into
the same file, 64-byte aligned, and ``load`` maps the file copy-on-write: loading costs next to
nothing, pages are read when touched and shared between the processes reading one file, and a
caller that writes into an array changes only its own copy, never the file.

File: MAGIC, then a little-endian uint64 header length and a JSON header (pickle offset/length,
buffer offsets/lengths), then the pickle and the buffers. Plain pickles (older warehouses) load too.
"""
from __future__ import annotations

import json
import pickle
import struct
from pathlib import Path
from typing import BinaryIO

import numpy as np

MAGIC = b"VRMPKL1\n"
ALIGN = 64


def dump(obj, handle: BinaryIO) -> None:
    """Write ``obj`` to the binary file ``handle`` (the arrays are written from memory, not copied)."""
    buffers: list[pickle.PickleBuffer] = []
    body = pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
    views = [b.raw() for b in buffers]
    layout, position = [], len(body)
    for view in views:
        position += -position % ALIGN
        layout.append((position, view.nbytes))
        position += view.nbytes
    header = json.dumps({"pickle": len(body), "buffers": layout}).encode()
    prefix = MAGIC + struct.pack("<Q", len(header)) + header
    prefix += b"\0" * (-len(prefix) % ALIGN)        # the body starts aligned: buffer offsets are from it
    handle.write(prefix)
    handle.write(body)
    written = len(body)
    for (offset, _), view in zip(layout, views):
        handle.write(b"\0" * (offset - written))
        handle.write(view)
        written = offset + view.nbytes


def load(path: Path):
    path = Path(path)
    with path.open("rb") as f:
        if f.read(len(MAGIC)) != MAGIC:
            return pickle.loads(path.read_bytes())       # a plain pickle
        (length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(length))
    start = len(MAGIC) + 8 + length
    start += -start % ALIGN
    mapped = np.memmap(path, mode="c", dtype=np.uint8)    # copy-on-write: writes stay private
    body = mapped[start:start + header["pickle"]]
    buffers = [mapped[start + offset:start + offset + size] for offset, size in header["buffers"]]
    return pickle.loads(body, buffers=buffers)
