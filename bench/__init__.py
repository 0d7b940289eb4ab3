"""Benchmarks: ``python -m bench`` runs them all and prints a table (see bench/__main__.py)."""
