"""A local stand-in for ModelArts v1 training jobs, IAM and the API gateway, for tests and demos.

    with Emulator() as emulator:
        base_url = emulator.start()
"""

from bot.emulator.defaults import (
    EMULATOR_AK,
    EMULATOR_DOMAIN,
    EMULATOR_PASSWORD,
    EMULATOR_PROJECT_ID,
    EMULATOR_PROJECT_NAME,
    EMULATOR_SK,
    EMULATOR_USERNAME,
)
from bot.emulator.gate import User
from bot.emulator.server import Emulator, Received, serve_forever
from bot.emulator.state import KILLED, KILLING, RUNNING, Fault

__all__ = [
    "EMULATOR_AK", "EMULATOR_DOMAIN", "EMULATOR_PASSWORD", "EMULATOR_PROJECT_ID",
    "EMULATOR_PROJECT_NAME", "EMULATOR_SK", "EMULATOR_USERNAME", "KILLED", "KILLING", "RUNNING",
    "Emulator", "Fault", "Received", "User", "serve_forever",
]
