#!/usr/bin/python3
"""Reads an sqc checkpoint with numpy and json alone (as any other tool would) and checks it
holds the values the C side wrote next to it: tests/checkpoint_numpy.py DIR."""
import json
import struct
import sys

import numpy as np

d = sys.argv[1]
with open(f"{d}/tiny.safetensors", "rb") as f:
    raw = f.read()
(n,) = struct.unpack("<Q", raw[:8])
header = json.loads(raw[8 : 8 + n])
data = raw[8 + n :]
meta = header.pop("__metadata__")
assert meta["sqc.model"] == "tiny", meta
expected = {}
with open(f"{d}/tiny.expected") as f:
    for line in f:
        name, shape, *values = line.split()
        expected[name] = (tuple(int(s) for s in shape.split("x")), np.array([float.fromhex(v) for v in values], np.float32))
assert set(header) == set(expected), (sorted(header), sorted(expected))
for name, entry in header.items():
    begin, end = entry["data_offsets"]
    assert entry["dtype"] == "F32"
    array = np.frombuffer(data[begin:end], dtype="<f4").reshape(entry["shape"])
    shape, values = expected[name]
    assert array.shape == shape, (name, array.shape, shape)
    assert np.array_equal(array.ravel(), values), name
print(f"checkpoint_numpy: 1 passed, 0 failed ({len(header)} tensors read with numpy)")
