"""ITNAS reproduction: DARTS search space, ITNAS search, derivation, evaluation and tables."""

__version__ = "0.1.0"
