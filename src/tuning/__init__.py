"""Optuna search over reducer x clusterer x classifier combinations."""
