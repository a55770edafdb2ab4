"""The measure engine: the measure base class, computing measures on a matrix, chance baselines."""
