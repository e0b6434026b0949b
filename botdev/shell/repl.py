"""The shell's read loop: a terminal with a prompt, or piped stdin read as a script."""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Iterator
from typing import TextIO

from bot.core.errors import InvalidIdError
from bot.modelarts.refs import JobRef, ref_from_words
from botdev.shell import lineedit
from botdev.shell.session import Session

HELP = """\
Type what you would type in Slack, plus a few shell commands:
  /modelarts list team-a-*          a slash command, signed as Slack signs it
  /modelarts stop team-a-resnet50   (by name, by training_job_id, or old-version
  /modelarts status 182626 278813    jobs by job id and version id; /modelarts help)
  1                                 click button [1] (also: click 1), a list's Stop too
  /as U0ALICE                       act as another Slack user from now on
  /home                             open the app's Home tab (as the current user): who you
                                    are to the bot, your jobs with Stop buttons, your requests
  /alert 182626 278813 loss is NaN  an alert, POSTed to the bot's /alerts intake
  /event JobHanged team-b-yolov8    a ModelArts job event, published by the emulator through
                                    (a stand-in) SMN to the bot's /smn (a v2 job's name or
                                    training_job_id; add `text` for a plain-text message).
                                    Events: JobStarted JobCompleted JobFailed JobTerminated
                                    JobRestarted JobHanged JobPreempted
  /sleep 3                          wait (e.g. for a stopping job to be KILLED)
  help, quit                        this text; leave (Ctrl-D too)
Lines starting with # are comments."""
EVENTS = ("JobStarted", "JobCompleted", "JobFailed", "JobTerminated", "JobRestarted",
          "JobHanged", "JobPreempted")
FORMATS = ("json", "text")
_USER = re.compile(r"^[UW][A-Z0-9]{2,20}$")
_CLICK = re.compile(r"^(?:click\s+)?(\d{1,4})$", re.IGNORECASE)


def lines(stream: TextIO, session: Session, interactive: bool) -> Iterator[str]:
    """Yield stripped lines; a terminal gets a prompt, a script gets each line echoed."""
    while True:
        prompt = f"{session.user}> "
        if interactive:
            try:
                line = input(prompt)
            except EOFError:
                return
        else:
            raw = stream.readline()
            if not raw:
                return
            line = raw.rstrip("\n")
            if line.strip() and not line.lstrip().startswith("#"):
                session.write([prompt + line.strip()])
        yield line.strip()


def run_line(session: Session, line: str) -> bool:
    """Carry out one line; False means leave."""
    if not line or line.startswith("#"):
        return True
    word, _, rest = line.partition(" ")
    rest = rest.strip()
    if word.lower() in ("quit", "exit", "/quit", "/exit"):
        return False
    if word.lower() in ("help", "/help", "?"):
        session.write(HELP.splitlines())
    elif (click := _CLICK.match(line)) is not None:
        if not session.click(int(click.group(1))):
            session.write([f"There is no button [{click.group(1)}] on screen (any more)."])
    elif word == "/as":
        if not _USER.match(rest):
            session.write(["Usage: /as U0ALICE (a Slack user id)"])
        else:
            session.user = rest
            session.write([f"You are now {rest}."])
    elif word == "/home":
        session.home()
    elif word == "/alert":
        got = alert_args(rest)
        if got is None:
            session.write(["Usage: /alert <training_job_id> <summary>, or for an old-version "
                           "job /alert <job_id> <version_id> <summary>"])
        else:
            session.alert(*got)
    elif word == "/event":
        got = event_args(rest)
        if got is None:
            session.write(["Usage: /event <EventName> <job name or training_job_id> [text], "
                           "events: " + " ".join(EVENTS)])
        else:
            session.event(*got)
    elif word == "/sleep":
        try:
            time.sleep(min(max(float(rest or 1), 0), 60))
        except ValueError:
            session.write(["Usage: /sleep <seconds>"])
    elif word == "/modelarts":
        session.command(word, rest)
    elif word.startswith("/"):
        session.write([f"The app has no {word} command; it has /modelarts (type help)."])
    else:
        session.write([f"I don't understand `{line[:40]}`: type help."])
    return True


def alert_args(rest: str) -> tuple[JobRef, str] | None:
    """(job, summary) from ``ID summary...`` or ``JOB VERSION summary...``; None if neither."""
    parts = rest.split(maxsplit=2)
    for n in (2, 1):
        if len(parts) > n:
            try:
                return ref_from_words(parts[:n]), " ".join(parts[n:])
            except InvalidIdError:
                continue
    return None


def event_args(rest: str) -> tuple[str, str, str] | None:
    """(event, job, format) from ``EVENT JOB [text|json]``, the event's case as ModelArts
    spells it; None when malformed."""
    parts = rest.split()
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2].lower() not in FORMATS):
        return None
    event = next((e for e in EVENTS if e.lower() == parts[0].lower()), None)
    if event is None:
        return None
    return event, parts[1], parts[2].lower() if len(parts) == 3 else "json"


def run(session: Session, stream: TextIO | None = None) -> int:
    stream = stream or sys.stdin
    interactive = stream.isatty()
    save = lineedit.setup() if interactive else None   # readline: on a terminal only
    try:
        for line in lines(stream, session, interactive):
            if not run_line(session, line):
                break
    finally:
        if save is not None:
            save()
    return 0


def main(user: str, channel: str, log_level: str = "ERROR") -> int:
    """Start a session, print its banner, run the lines, tear everything down."""
    from botdev.shell.session import ShellError

    def write(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    session = Session(write, user=user, channel=channel, log_level=log_level)
    try:
        banner = session.start()
    except ShellError as exc:
        print(f"modelarts-bot shell: {exc}", file=sys.stderr)
        return 1
    try:
        session.write(banner + [""])
        return run(session)
    finally:
        session.close()
