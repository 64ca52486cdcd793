"""Benchmarks of jaxbp's training loops, the gradient audit and the audit CLI.

Run ``python -m benchmarks`` (or ``python benchmarks/run.py``); see :mod:`benchmarks.run`.
"""
