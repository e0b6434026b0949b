"""Entry points: the command line, the servers (HTTP under gunicorn, Socket Mode), the health
and metrics routes, and the one factory that builds the bot (wiring)."""
