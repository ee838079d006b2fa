"""Reducers, clusterers, classifiers and the deployable segmenter."""
