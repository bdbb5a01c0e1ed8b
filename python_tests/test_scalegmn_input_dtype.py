"""A ScaleGMN model given weights of another dtype says so, naming the argument and both dtypes."""

import pytest
import torch

import scalegmn_ext as sx
from scalegmn_ext.models import ScaleGMN, ScaleGMNConfig, ScaleGMNEquivariant
from scalegmn_ext.testing import random_weights

ARCH = sx.Architecture.siren()
CFG = ScaleGMNConfig(d_hid=8, num_layers=2, d_out=3)


@pytest.mark.parametrize("model_cls", [ScaleGMN, ScaleGMNEquivariant])
@pytest.mark.parametrize("impl", ["fast", "reference"])
def test_weights_of_another_dtype_are_named(model_cls, impl):
    model = model_cls(ARCH, CFG)  # float32 parameters
    model.impl = impl
    ws, bs = random_weights(ARCH, 2, dtype=torch.float64)
    with pytest.raises(
        TypeError,
        match=r"weights/biases have dtype torch\.float64 but this model's parameters are "
        r"torch\.float32.*model\.to\(torch\.float64\)",
    ):
        model(ws, bs)
    g = sx.WeightGraph.from_weights(ARCH, ws, bs)
    with pytest.raises(
        TypeError,
        match=r"weights \(a WeightGraph\) has dtype torch\.float64 but this model's "
        r"parameters are torch\.float32",
    ):
        model(g)
    # the same inputs are accepted once the dtypes agree, either way round
    model.double()(ws, bs)
    model.float()([w.float() for w in ws], [b.float() for b in bs])
