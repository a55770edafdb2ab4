"""Reading and validating a study's YAML spec (the first stage of a run)."""
