"""A local stand-in for ModelArts training jobs (v1 and v2), IAM and the API gateway, for tests
and demos. Its test API is keyed by JobRef: ``emulator.stop_count(V2Job(id))``.

    with Emulator() as emulator:
        base_url = emulator.start()
"""

from botdev.emulator.defaults import (
    EMULATOR_AK,
    EMULATOR_DOMAIN,
    EMULATOR_PASSWORD,
    EMULATOR_PROJECT_ID,
    EMULATOR_PROJECT_NAME,
    EMULATOR_SK,
    EMULATOR_USERNAME,
)
from botdev.emulator.gate import User
from botdev.emulator.server import Emulator, Received, serve_forever
from botdev.emulator.state import KILLED, KILLING, RUNNING, Fault
from botdev.emulator.training import PHASES, STOPPABLE

__all__ = [
    "EMULATOR_AK", "EMULATOR_DOMAIN", "EMULATOR_PASSWORD", "EMULATOR_PROJECT_ID",
    "EMULATOR_PROJECT_NAME", "EMULATOR_SK", "EMULATOR_USERNAME", "KILLED", "KILLING", "PHASES",
    "RUNNING", "STOPPABLE", "Emulator", "Fault", "Received", "User", "serve_forever",
]
