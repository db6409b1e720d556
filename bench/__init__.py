"""Benchmarks: load generator, baselines, encoder and FAISS micro-benchmarks. Not part of the test selection."""
