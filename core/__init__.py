"""The engine of selectivity-eval: hook specifications, plugin manager, measures, extraction, runs."""
