"""simfleet bench."""
