"""Deterministic simulator: the real core nodes on a virtual clock and an in-memory network."""
