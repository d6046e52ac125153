"""simfleet producers."""
