"""Scoring, profiling and plotting of segmentations."""
