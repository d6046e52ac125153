"""simfleet projections."""
