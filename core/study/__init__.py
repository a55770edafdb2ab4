"""A study: a run from a spec through every stage, its steps, and sweeps over many runs."""
