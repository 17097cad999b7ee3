"""Stand-in for a phone: its "latency" is a deterministic function of the ONNX model plus noise.

Latency = a per-operator cost (dispatch) + a cost per weight per output pixel (compute), with
±2% noise seeded by the model's bytes, so the same model always reads the same and a predictor
has something real, but not trivial, to learn.
"""

import hashlib
import random
import sys
from pathlib import Path

import onnx
from onnx import numpy_helper

model_path, shape = sys.argv[1], sys.argv[2]
model = onnx.load(model_path)
_, _, h, w = (int(d) for d in shape.split("x"))
weights = sum(numpy_helper.to_array(t).size for t in model.graph.initializer)
ms = 0.01 * len(model.graph.node) + 4e-6 * weights * (h * w) / 1024
rng = random.Random(hashlib.sha256(Path(model_path).read_bytes()).hexdigest())
print(f"avg={ms * (1 + rng.uniform(-0.02, 0.02)):.4f} ms")
