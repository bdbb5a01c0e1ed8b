"""What users run on top of the library: model zoos, batched training of many small networks,
the demo and the benchmark cores. The command line (:mod:`scalegmn_ext.cli`) dispatches here.

* :mod:`.data` -- real images that ship inside installable packages (offline).
* :mod:`.fit` -- batched SIREN fitting / CNN training (one functional forward per step).
* :mod:`.zoo` -- the zoo format, generators and readers of the published zoos.
* :mod:`.demo` -- ``scalegmn-ext demo``; :mod:`.bench` -- the graph-op benchmark core.
* :mod:`.plots` -- the zoo figures (matplotlib, optional extra ``plots``).

Submodules are imported on use (``from scalegmn_ext.tasks import fit``), so ``import
scalegmn_ext`` stays light.
"""
