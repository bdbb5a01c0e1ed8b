"""What the published-zoo readers share: the error type and the batch they return."""

from __future__ import annotations

import dataclasses
import os

import torch
from torch import Tensor

from ....weightspace.adapters import to_nfn, to_pyg_batch
from ....weightspace.architecture import Architecture
from ....weightspace.graph import WeightGraph

__all__ = ["PathLike", "ZooFormatError", "ZooBatch", "empty_batch"]

PathLike = str | os.PathLike


class ZooFormatError(ValueError):
    """A zoo file is missing, malformed, truncated or inconsistent; the message names the file."""


@dataclasses.dataclass
class ZooBatch:
    """B networks of one architecture read from a zoo (torch layout, batch axis first)."""

    arch: Architecture
    weights: list[Tensor]
    biases: list[Tensor]
    labels: Tensor | None

    def __len__(self) -> int:
        return int(self.weights[0].shape[0])

    def to_nfn(self) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
        """nfn layout ``(weights, biases)``; see :func:`~scalegmn_ext.weightspace.adapters.to_nfn`."""
        return to_nfn(self.weights, self.biases)

    def to_pyg(self, *, input_value: float = 1.0, dense_centre: bool = True, edge_order: str = "receiver"):
        """``torch_geometric.data.Batch`` of the networks with ``y = labels``; see
        :func:`~scalegmn_ext.weightspace.adapters.to_pyg_batch`."""
        return to_pyg_batch(
            self.arch,
            self.weights,
            self.biases,
            self.labels,
            input_value=input_value,
            dense_centre=dense_centre,
            edge_order=edge_order,
        )

    def to_graph(self, *, input_value: float = 1.0, dense_centre: bool = True) -> WeightGraph:
        return WeightGraph.from_weights(
            self.arch, self.weights, self.biases, input_value=input_value, dense_centre=dense_centre
        )


def empty_batch(arch: Architecture, dtype: torch.dtype) -> tuple[list[Tensor], list[Tensor]]:
    """Weight and bias lists of zero networks of ``arch`` (what a reader returns for an empty selection)."""
    ws = [torch.empty((0,) + s.weight_shape, dtype=dtype) for s in arch.layers]
    bs = [torch.empty(0, s.out_features, dtype=dtype) for s in arch.layers]
    return ws, bs
