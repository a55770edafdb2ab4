"""The plugin system: hook specifications, the plugin base class and the registry that loads plugins."""
