"""Foundations every floor may use: settings, errors, Redis keys and connections, logs, metrics."""
