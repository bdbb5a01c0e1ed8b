"""Readers for the published weight-space zoos, one module per published layout.

* :mod:`.dwsnets_inr` -- the DWSNets MNIST-INR zoo (one SIREN ``.pth`` per MNIST image, JSON splits).
* :mod:`.small_cnn_zoo` -- the Small CNN Zoo (``weights.npy`` + ``metrics.csv.gz`` + ``layout.csv``).
* :mod:`.common` -- :class:`ZooFormatError` and the :class:`ZooBatch` both readers return.

Both readers give the package's batched weight lists (per layer ``[B, out, in]`` /
``[B, out, in, kh, kw]`` in torch layout, biases ``[B, out]``), ready for
:func:`scalegmn_ext.weights_to_graph`, :mod:`scalegmn_ext.weightspace.functional` and the adapters
(:func:`~scalegmn_ext.weightspace.adapters.to_nfn`,
:func:`~scalegmn_ext.weightspace.adapters.to_pyg_batch`, re-exported here).
Loading never runs code from the files: ``.pth`` files go through
``torch.load(weights_only=True)`` and ``.npy`` files through ``np.load(allow_pickle=False)``.
Every format error is a :class:`ZooFormatError` (a ``ValueError``) that names the file.
"""

from ....weightspace.adapters import to_nfn, to_pyg_batch
from .common import ZooBatch, ZooFormatError
from .dwsnets_inr import (
    INRZooBatch,
    inr_key_names,
    iter_mnist_inrs,
    list_mnist_inrs,
    load_inr_file,
    load_mnist_inrs,
    make_mnist_inr_splits,
    read_inr_split_file,
    scan_mnist_inrs,
    write_inr_split_file,
)
from .small_cnn_zoo import (
    CNNZooBatch,
    LayoutEntry,
    SmallCNNZoo,
    arch_from_layout,
    load_small_cnn_zoo,
    open_small_cnn_zoo,
    read_layout_csv,
    read_metrics_columns,
    read_metrics_csv,
    read_order_file,
    split_indices_iid,
    unflatten_tf,
)

__all__ = [
    "ZooFormatError",
    "ZooBatch",
    "INRZooBatch",
    "CNNZooBatch",
    # DWSNets MNIST-INR zoo
    "inr_key_names",
    "load_inr_file",
    "read_inr_split_file",
    "scan_mnist_inrs",
    "make_mnist_inr_splits",
    "write_inr_split_file",
    "list_mnist_inrs",
    "load_mnist_inrs",
    "iter_mnist_inrs",
    # Small CNN Zoo
    "LayoutEntry",
    "read_layout_csv",
    "read_metrics_columns",
    "read_metrics_csv",
    "read_order_file",
    "arch_from_layout",
    "split_indices_iid",
    "unflatten_tf",
    "SmallCNNZoo",
    "open_small_cnn_zoo",
    "load_small_cnn_zoo",
    # conversions (defined in scalegmn_ext.weightspace.adapters)
    "to_nfn",
    "to_pyg_batch",
]
