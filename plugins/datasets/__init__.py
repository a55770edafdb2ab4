"""Built-in data sets: digits, image folders and ImageNet validation."""
