"""Objectives: one module per loss with its target encoding, metrics and prediction transform."""
