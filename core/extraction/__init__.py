"""Extraction: a layer's activations captured with forward hooks, reduced to one value per unit."""
