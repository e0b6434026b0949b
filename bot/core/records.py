"""Records kept in Redis are read by every replica, including one a version older or newer
during a rolling upgrade: a reader takes the fields it knows (defaults for those a record
lacks) and leaves the others."""

from __future__ import annotations

from dataclasses import fields


def known(cls: type, data: dict) -> dict:
    """``data`` without the keys that are not fields of dataclass ``cls``."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in names}
