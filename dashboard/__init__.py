"""simfleet dashboard."""
