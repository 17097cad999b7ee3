"""edgeexplore."""
