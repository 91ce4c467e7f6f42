"""Deterministic simulation: seeded worlds driving the cores, and checkers of their histories."""
