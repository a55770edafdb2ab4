"""Model and data set sources: the base classes their plugins implement, and weights files."""
