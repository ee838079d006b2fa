"""Benchmarks, run by hand: ``python -m src.bench {data,load} [--lines N]``.

Each builds its own synthetic input in code (no files kept, no network) and prints one line per
measurement, so numbers can be pasted into an issue or an experiment note.
"""
