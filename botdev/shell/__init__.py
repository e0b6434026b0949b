"""``modelarts-bot shell``: try the bot in a terminal, without a Slack workspace or a cloud.

    session.py  the wiring: the real bot on loopback, the Slack stand-in, emulator or ModelArts
    render.py   Web API calls as terminal text (pure)
    repl.py     reads lines from a terminal or from piped stdin, and runs them
"""
