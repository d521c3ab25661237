"""The application layer: the command line, the demo and the experiments.

This is the only layer that imports the core (:mod:`isoproof`), the exporters
(:mod:`isoproof.exporters`) and the proofs (:mod:`isoproof.proofs`) together; the core imports
neither of them nor this package (checked by ``tests/test_architecture.py``).
"""
