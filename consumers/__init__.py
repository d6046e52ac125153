"""simfleet consumers."""
