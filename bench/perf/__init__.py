"""How fast the bot answers and what it adds: ``python -m bench loopback|wan|listing|...``."""
