"""Scoring allocations: the evaluator on exactly the exported weights, its weight cache, its fidelity to llama.cpp."""
