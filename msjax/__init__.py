"""msjax: multimodal sensing representation learning in JAX/Flax.

Subpackages (dependencies point one way: kernels <- nn <- methods <- train <- cli;
``data`` is used by ``train`` and ``cli``):

* :mod:`msjax.kernels` -- pure loss kernels of SPEC.md (Sinkhorn, MPP, Pro-UCL, ...).
* :mod:`msjax.nn` -- Flax Linen encoders, heads and fusion modules.
* :mod:`msjax.methods` -- ProtoMM, ProMoBal, InfoMAE and baselines behind one interface.
* :mod:`msjax.data` -- synthetic generator, signal processing, dataset builders, pipelines.
* :mod:`msjax.train` -- sharded training loop, checkpointing, evaluation, reports.
"""

__version__ = "0.1.0"
