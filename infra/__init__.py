"""simfleet infra."""
