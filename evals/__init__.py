"""Evals: datasets (the built-in ones included), grading, metrics, the resumable
runner, reports and plots. See docs/evaluation.md."""
