"""Who a user is told to ask (``SUPPORT_CONTACT``), written as Slack shows it.

Wherever the bot tells someone to ask for a role, or for help with a job that will not stop, it
names this contact: ``Ask <contact> to map you.`` The setting takes one of

    C0123ABCD, G0123ABCD    a channel id        -> <#C0123ABCD>          (a link to the channel)
    #ml-platform            a channel name      -> #ml-platform          (text: Slack links a
                                                                          channel by id only)
    U0123ABCD, W0123ABCD    a user id           -> <@U0123ABCD>          (a mention)
    S0123ABCD               a user group id     -> <!subteam^S0123ABCD>  (a group mention)
    @ml-oncall              a name              -> @ml-oncall            (text, as above)
    https://wiki.example/x  a page              -> <https://...|the platform team>

and unset, the words the bot always used: "the platform team". Anything else is refused at
start-up (``parse``), so a message never carries a half-formed mention or a broken link.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

DEFAULT = "the platform team"
MAX_URL = 500

_CHANNEL_ID = re.compile(r"\A[CG](?=[A-Z0-9]*\d)[A-Z0-9]{6,20}\Z")
_USER_ID = re.compile(r"\A[UW](?=[A-Z0-9]*\d)[A-Z0-9]{6,20}\Z")
_GROUP_ID = re.compile(r"\AS(?=[A-Z0-9]*\d)[A-Z0-9]{6,20}\Z")
_CHANNEL_NAME = re.compile(r"\A#[a-z0-9][a-z0-9._-]{0,79}\Z")
_NAME = re.compile(r"\A@[A-Za-z0-9][A-Za-z0-9._-]{0,79}\Z")
EXPECTED = ("a channel id (C0123ABCD) or name (#ml-platform), a user id (U0123ABCD) or name "
            "(@ml-oncall), a user group id (S0123ABCD), or an https:// (or http://) URL")


def parse(value: str) -> str:
    """``value`` as Slack text (the table above); ValueError naming the forms otherwise."""
    value = value.strip()
    if _CHANNEL_ID.match(value):
        return f"<#{value}>"
    if _USER_ID.match(value):
        return f"<@{value}>"
    if _GROUP_ID.match(value):
        return f"<!subteam^{value}>"
    if _CHANNEL_NAME.match(value) or _NAME.match(value):
        return value
    if _is_url(value):
        return f"<{value.replace('&', '&amp;')}|{DEFAULT}>"   # Slack's one escape in a link
    raise ValueError(f"expected {EXPECTED}")


def contact_text(value: str | None) -> str:
    """What goes after "ask": the setting as Slack text, or "the platform team" when unset."""
    return parse(value) if value and value.strip() else DEFAULT


def _is_url(value: str) -> bool:
    """An http(s) URL that fits in a Slack link: no space, no ``<``, ``>`` or ``|``."""
    if len(value) > MAX_URL or any(c in value for c in "<>| \t\r\n") or not value.isprintable():
        return False
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme in ("https", "http") and bool(parts.hostname)
