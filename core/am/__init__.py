"""Activation maximisation: the base class of an AM method."""
