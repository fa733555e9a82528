"""Weak-to-strong deception: a reproducible, CPU-first edition of Yang et al. (ICLR 2025)."""

__version__ = "0.1.0"
