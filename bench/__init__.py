"""Benchmarks and load tools that print figures: `bashlsp bench serve|train|stress` (and the engine
bench). They drive the product from outside, so nothing in model/, server/ or training/ imports
them (an import-linter contract in pyproject.toml); the figures they measure live in
docs/benchmarks.md."""
