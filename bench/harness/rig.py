"""What the loopback, WAN and probe runs share: the bot's environment, its launch, the machine.

The bot runs under its production server (``python -m bot serve``) with a roles file that maps
``USER`` directly and ``GROUP_USER`` through the usergroup ``GROUP``.
"""

from __future__ import annotations

import argparse
import os
import platform
from pathlib import Path

from bench.harness import servers
from botdev.emulator import defaults
from botdev.standin.slack import BOT_TOKEN

SECRET = "bench-signing-secret"  # noqa: S105 - the benchmark's own, local
ALERTS_TOKEN = "bench-alerts-token"  # noqa: S105
PREFIX = "bench:"
ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results"
USER = "U0BENCH"          # mapped directly in the roles file
GROUP_USER = "U0GROUPIE"  # holds its role through a usergroup
GROUP = "S0BENCH"
CHANNEL = "C0BENCH"
ROLES = f"""roles:
  oncall:
    jobs: ["*"]
users:
  {USER}: [oncall]
usergroups:
  {GROUP}: [oncall]
"""


def environment(tmp: Path, rig_urls: dict, args: argparse.Namespace) -> dict[str, str]:
    roles = tmp / "roles.yml"
    roles.write_text(ROLES, encoding="utf-8")
    return {
        **servers.base_env(), "PYTHONPATH": str(ROOT),
        "SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SECRET,
        "SLACK_API_URL": rig_urls["slack"], "REDIS_URL": rig_urls["redis"],
        "REDIS_KEY_PREFIX": PREFIX, "ROLES_FILE": str(roles),
        "MODELARTS_ENDPOINT": rig_urls["emulator"],
        "MODELARTS_PROJECT_ID": defaults.EMULATOR_PROJECT_ID,
        "MODELARTS_AK": defaults.EMULATOR_AK, "MODELARTS_SK": defaults.EMULATOR_SK,
        "ALERTS_TOKEN": ALERTS_TOKEN, "HOST": "127.0.0.1",
        "WEB_CONCURRENCY": str(args.workers), "WEB_THREADS": str(args.threads),
        "LOG_LEVEL": "INFO",
    }


def serve(argv: list[str], env: dict, tmp: Path, name: str) -> servers.Served:
    port = servers.free_port()
    return servers.Served(argv, {**env, "PORT": str(port)}, tmp / f"{name}.log", port)


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"nproc": os.cpu_count(), "cpu": cpu, "python": platform.python_version()}


def add_server_args(parser: argparse.ArgumentParser) -> None:
    """The bot's gunicorn shape, as ``WEB_CONCURRENCY`` and ``WEB_THREADS`` set it."""
    parser.add_argument("--workers", type=int, default=2, help="WEB_CONCURRENCY (2)")
    parser.add_argument("--threads", type=int, default=8, help="WEB_THREADS (8)")
