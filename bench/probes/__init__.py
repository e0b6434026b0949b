"""Small one-off measurements: ``python -m bench guard|metrics``."""
