"""Benchmarks: printed figures and ratios against baselines run in the same process."""
