"""Promises kept under faults: ``python -m bench chaos|failover|storm``."""
