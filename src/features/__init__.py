"""Per-customer features."""
