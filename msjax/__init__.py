"""msjax: multimodal sensing representation learning in JAX/Flax.

Subpackages (dependencies point one way: kernels <- nn <- methods <- train
<- cli; ``data`` is used by ``train`` and ``cli``):

* :mod:`msjax.kernels` -- pure loss kernels of SPEC.md (Sinkhorn, MPP, ...).
* :mod:`msjax.nn` -- Flax Linen encoders, heads and fusion modules.
* :mod:`msjax.methods` -- ProtoMM, ProMoBal, InfoMAE and baselines.
* :mod:`msjax.data` -- synthetic data, signals, dataset builders, pipelines.
* :mod:`msjax.train` -- sharded loop, checkpoints, evaluation, reports.
"""

__version__ = "0.1.0"
