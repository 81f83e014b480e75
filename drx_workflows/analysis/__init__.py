"""Comparison tables and plots, pure functions of potential and voltage results."""
