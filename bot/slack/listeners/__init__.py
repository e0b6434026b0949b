"""Bolt listeners, one module per kind; each has ``register(app, flow, later, ...)``, its
collaborators built by bot/app/wiring.py."""
