"""Benchmarks run by `online-ensemble bench ...`: side by side, in one process run."""
