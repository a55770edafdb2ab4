"""The activation store: extracted activations on disk, keyed by what determines them."""
