"""Shared statistics: labels, rankings and per-class statistics computed once for every measure."""
