"""Benchmarks: each module compares the provider with a baseline measured in the same run."""
