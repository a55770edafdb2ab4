"""Built-in plugins. Each module registers itself through the same hooks a third-party plugin uses."""
