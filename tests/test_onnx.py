"""Every block choice exports to ONNX and runs in ONNX Runtime with PyTorch's outputs."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
from block_nets import with_bn_statistics

from edgeexplore.config import ArchConfig, StageConfig
from edgeexplore.models import build
from edgeexplore.models.export import export_onnx

# Each net puts three block choices into stages 1-3 (sample rates 4, 4, 4: stage 3 needs
# padding at both sizes) and a sample-rate-1 block into stage 4; together the nets cover every
# choice of tests/test_models.py::CHOICES.
NETS = {
    "official-k3-lsa": [("lgl", {}), ("lgl", {"agg_kernel": 3}), ("lgl", {"local_agg": "lsa"})],
    "samplers": [("lgl", {"sampler": "center"}), ("lgl", {"sampler": "avg"}),
                 ("lgl", {"sampler": "max"})],
    "propagation-sra": [("lgl", {"local_prop": "bilinear"}), ("lgl", {"local_prop": "nearest"}),
                        ("sra", {})],
    "conv": [("conv", {}), ("conv", {"agg_kernel": 3}), ("lgl", {"local_agg": "lsa", "window": 5})],
}
LAST = {"official-k3-lsa": "lgl", "samplers": "sra", "propagation-sra": "lgl", "conv": "sra"}


def net(name: str) -> ArchConfig:
    stages = [
        StageConfig(depth=1, width=w, heads=2, mlp_ratio=2.0, sample_rate=4, block=b, options=o)
        for w, (b, o) in zip((8, 16, 16), NETS[name])
    ]
    stages.append(StageConfig(depth=1, width=32, heads=2, mlp_ratio=2.0, sample_rate=1,
                              block=LAST[name]))
    return ArchConfig(stages=tuple(stages), num_classes=5)


@pytest.mark.parametrize("size", [(224, 224), (256, 192)], ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("name", list(NETS))
def test_block_choices_export_to_onnx(name, size):
    torch.manual_seed(0)
    model = with_bn_statistics(build(net(name)).eval())
    x = torch.randn(1, 3, *size)
    data = export_onnx(model, x)
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        ref = model(x).numpy()
    assert out.shape == (1, 5)
    np.testing.assert_allclose(out, ref, atol=1e-4, rtol=1e-4)
