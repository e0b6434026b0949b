"""The /modelarts slash command. Parsing is pure and answers in the ack; the rest comes later,
on the lookup pool, and only for an admitted user (bot/flow/admission.py)."""

from __future__ import annotations

from slack_bolt import Ack, App, Respond

from bot.core.logs import decision
from bot.flow.admission import if_admitted
from bot.flow.commands import USAGE, Command, parse
from bot.flow.finder import Finder
from bot.flow.history import History
from bot.flow.stop import StopFlow
from bot.slack.later import Later


def register(app: App, flow: StopFlow, later: Later, finder: Finder, history: History) -> None:
    @app.command("/modelarts")
    def modelarts(ack: Ack, command: dict, respond: Respond) -> None:
        parsed = parse(command.get("text"))
        if not isinstance(parsed, Command):
            ack(text=parsed.message, response_type="ephemeral")
            decision("rejected", user=command.get("user_id"), channel=command.get("channel_id"),
                     outcome="malformed_command")
            return
        if parsed.action == "help":
            ack(text=USAGE, response_type="ephemeral")
            return
        ack()

        def notify(text: str) -> None:
            respond(text=text, response_type="ephemeral", replace_original=False)

        def show(text: str, blocks: list[dict]) -> None:
            respond(text=text, blocks=blocks, response_type="ephemeral", replace_original=False)

        user, channel = command["user_id"], command["channel_id"]
        if parsed.action == "history" and parsed.name is not None:
            work, args = history.show_named, (user, parsed.name, notify, parsed.project)
        elif parsed.action == "history":
            work, args = history.show, (user, parsed.ref, notify)
        elif parsed.action == "list":
            work, args = finder.listing, (user, parsed.pattern, show, notify)
        elif parsed.name is not None and parsed.action == "status":
            work, args = finder.status, (user, parsed.name, notify, show, parsed.project)
        elif parsed.name is not None:
            work, args = finder.stop, (user, channel, parsed.name, notify, show, parsed.reason,
                                       parsed.project)
        elif parsed.action == "status":
            work, args = flow.status, (user, parsed.ref, notify)
        else:
            work, args = flow.request, (user, channel, parsed.ref, notify, None, None,
                                        parsed.reason)
        later(if_admitted, flow.roles, user, notify, work, *args)
