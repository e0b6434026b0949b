"""Errors the bot raises. Failures of ModelArts are values (see bot.modelarts.models), not these.

BotError
 ├── ConfigError        a setting or the roles file is missing or wrong; start-up stops
 └── InvalidIdError     a job or version id is not a positive integer; no request is built

A failing Redis is not one of these: each store catches ``redis.RedisError`` where it calls
Redis and answers with a value its caller shows ("try again"), never a raise past the ack.
"""


class BotError(Exception):
    """Base of the bot's own errors. Messages never carry a secret."""


class ConfigError(BotError):
    """A setting or the roles file is missing or wrong."""


class InvalidIdError(BotError, ValueError):
    """A job or version id is not a positive integer."""

