"""The built-in AM method (gradient ascent) and its library call ``se.maximise``."""
