"""``modelarts-bot`` / ``python -m bot``: serve, doctor, audit, emulator, shell."""

from __future__ import annotations

import argparse
import sys

from bot.core.errors import ConfigError
from bot.core.settings import load_settings


def _serve(args: argparse.Namespace) -> int:
    from bot.app.serve import Server
    from bot.core.logs import capture
    from bot.flow.roles import load_roles

    settings = load_settings()
    problems = settings.problems()
    if problems:
        raise ConfigError(problems[0])
    capture(settings.LOG_LEVEL, settings.secret_values())   # from here on, JSON lines only
    load_roles(settings.ROLES_FILE)
    if settings.socket_mode:
        from bot.app.socket_mode import SocketModeServer

        SocketModeServer(settings).run()
        return 0
    Server(settings).run()
    return 0


def _doctor(args: argparse.Namespace) -> int:
    from bot.app import doctor

    return doctor.main()


def _audit(args: argparse.Namespace) -> int:
    from bot.flow.audit import cli

    return cli(load_settings(), args.since, args.job, args.user, args.json,
               err=lambda text: print(text, file=sys.stderr))


def _dev_tools() -> None:
    """The emulator and the shell are developer tools (botdev/), not in the image."""
    import importlib.util

    if importlib.util.find_spec("botdev") is None:
        raise ConfigError("this is a developer tool, not installed here (the image ships only "
                          "the bot): run it from a clone with `make shell`")


def _emulator(args: argparse.Namespace) -> int:
    _dev_tools()
    from botdev.emulator import serve_forever

    serve_forever(host=args.host, port=args.port, seed_path=args.jobs)
    return 0


def _shell(args: argparse.Namespace) -> int:
    _dev_tools()
    from botdev.shell.repl import main

    return main(args.user, args.channel, args.log_level)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="modelarts-bot",
                                  description="Stop ModelArts training jobs safely from Slack.")
    sub = top.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="serve Slack requests (HTTP, or Socket Mode with SLACK_APP_TOKEN)"
                   ).set_defaults(run=_serve)
    sub.add_parser("doctor", help="check settings, Redis, ModelArts, Slack and the roles file"
                   ).set_defaults(run=_doctor)
    audit = sub.add_parser("audit", help="print the audit trail (oldest first): a table, or "
                           "one JSON object a line")
    audit.add_argument("--since", default="24h", help="how far back: 30m, 24h, 7d, or all "
                       "(default 24h)")
    audit.add_argument("--job", help="a training_job_id, JOB:VERSION, v1:JOB:VERSION or a v1 "
                       "job id (all its versions)")
    audit.add_argument("--user", help="a Slack user id: entries by or requested by them")
    audit.add_argument("--json", action="store_true", help="one JSON object a line (for a SIEM)")
    audit.set_defaults(run=_audit)
    emu = sub.add_parser("emulator", help="run the ModelArts emulator (for tests and rehearsals)")
    emu.add_argument("--host", default="127.0.0.1")
    emu.add_argument("--port", type=int, default=8089)
    emu.add_argument("--jobs", default=None, help="YAML or JSON file of jobs to seed")
    emu.set_defaults(run=_emulator)
    shell = sub.add_parser("shell", help="try the bot in a terminal: Slack stood in, ModelArts "
                           "emulated unless MODELARTS_ENDPOINT is set")
    shell.add_argument("--user", default="U0YOU", help="the Slack user you start as")
    shell.add_argument("--channel", default="C0SHELL", help="the channel you type in")
    shell.add_argument("--log-level", default="ERROR", help="the bot's log lines on stderr")
    shell.set_defaults(run=_shell)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.run(args)
    except ConfigError as exc:
        print(f"modelarts-bot: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
