"""msjax's own float64 reference of SPEC.md and the test vectors made from it.

``spec_numpy`` implements every kernel of ``../shared/SPEC.md`` in plain numpy,
written from the SPEC alone (it imports nothing from msjax); ``vectors`` draws
fixed-seed inputs, evaluates the reference and its gradients (complex step,
exact to float64 rounding) and derives the float32 tolerances. The kernel tests
read these vectors (``tests.conftest.load_vectors``), so the suite needs nothing
outside the repository; ``../shared/testvectors`` is an extra cross-check.
"""
