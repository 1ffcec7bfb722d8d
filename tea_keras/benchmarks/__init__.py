"""Benchmark scripts (run as modules; they print figures for BENCHMARKS.md)."""
