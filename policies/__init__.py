"""Rules several flows apply alike (the producers schedule by them, the consumers act by them):
the floor between the flows and the adapters, importing only ``events`` and ``infra``."""
