"""simfleet sandbox."""
