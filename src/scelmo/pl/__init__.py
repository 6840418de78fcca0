"""Plots of what ``scelmo.tl`` writes."""

__all__: list[str] = []
