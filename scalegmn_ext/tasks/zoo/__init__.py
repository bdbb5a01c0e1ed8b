"""Model zoos: generate (resumably) and read collections of trained networks.

* :mod:`scalegmn_ext.tasks.zoo.format` -- the on-disk format (safetensors + JSON + CSV) and the
  :class:`~scalegmn_ext.tasks.zoo.format.Zoo` reader.
* :mod:`scalegmn_ext.tasks.zoo.inr` -- SIREN INR zoos of real images (MNIST-5k or Fashion-MNIST).
* :mod:`scalegmn_ext.tasks.zoo.cnn` -- Small-CNN-Zoo CNNs on Fashion-MNIST with varied hyper-parameters.
* :mod:`scalegmn_ext.tasks.zoo.mlp` -- MLP classifiers on the same images, same hyper-parameters and format.
* :mod:`scalegmn_ext.tasks.zoo.generation` -- what both generators share (worker threads, split
  fractions, summary statistics).
* :mod:`scalegmn_ext.tasks.zoo.published` -- readers for the published zoos (one module per layout).

The figures the commands write (INR preview, CNN accuracy histogram) are drawn by
:mod:`scalegmn_ext.tasks.plots` (matplotlib, optional: ``pip install 'scalegmn_ext[plots]'``).

Command line: ``scalegmn-ext zoo inr|cnn|mlp --n N --out DIR``.
"""

from .format import FORMAT_VERSION, Zoo, ZooWriter, arch_from_dict, arch_to_dict

__all__ = [
    "Zoo",
    "ZooWriter",
    "arch_to_dict",
    "arch_from_dict",
    "FORMAT_VERSION",
    "generate_inr_zoo",
    "generate_cnn_zoo",
    "generate_mlp_zoo",
]


def __getattr__(name):  # lazy: importing the reader does not import the generators
    if name == "generate_inr_zoo":
        from .inr import generate_inr_zoo

        return generate_inr_zoo
    if name == "generate_cnn_zoo":
        from .cnn import generate_cnn_zoo

        return generate_cnn_zoo
    if name == "generate_mlp_zoo":
        from .mlp import generate_mlp_zoo

        return generate_mlp_zoo
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
