"""Errors the bot raises. Failures of ModelArts are values (see bot.modelarts.models), not these.

BotError
 ├── ConfigError        a setting or the roles file is missing or wrong; start-up stops
 ├── InvalidIdError     a job or version id is not a positive integer; no request is built
 └── StateUnavailable   Redis cannot be reached; nothing was changed
"""


class BotError(Exception):
    """Base of the bot's own errors. Messages never carry a secret."""


class ConfigError(BotError):
    """A setting or the roles file is missing or wrong."""


class InvalidIdError(BotError, ValueError):
    """A job or version id is not a positive integer."""


class StateUnavailable(BotError):
    """Redis could not be reached or answered with an error."""
