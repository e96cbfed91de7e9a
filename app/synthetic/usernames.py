"""JupyterHub usernames, and the escaped forms Kubernetes objects carry.

Real hubs see e-mail addresses, capitals, non-ASCII letters and Windows-style domain logins. The
KubeSpawner escapes a username into `[a-z0-9-]` for pod names, labels and home directories; the
label value is cut at 63 characters (the Kubernetes limit), so two long names that share a prefix
end up with the same label. Every hub gets a few of these on purpose.
"""

from __future__ import annotations

import random
import string

import escapism

LABEL_VALUE_LIMIT = 63
_SAFE = set(string.ascii_lowercase + string.digits)

# Awkward on purpose: each one needs escaping for a different reason.
AWKWARD_USERNAMES = (
    "Alice.Smith@example.org",  # e-mail address with capitals and dots
    "josé",  # non-ASCII Latin letter
    "Bob_Jones",  # capitals and an underscore
    "李雷",  # no ASCII at all
    "mary-ann",  # the escape character itself
    "zoë",
    "CORP\\jdoe",  # Windows domain login: a backslash, escaped again in OpenMetrics
    "j.doe+hub@example.com",
    "DrWho",
    "Ünal.Yılmaz@uni.example.de",
    "o.connor",
)

# Two long e-mail addresses whose escaped forms agree on their first 63 characters, so their
# truncated `hub.jupyter.org/username` labels collide while their pod names do not.
_SHARED_PREFIX = "christopher.alexander.montgomery-featherstonehaugh.research"
COLLIDING_USERNAMES = (
    f"{_SHARED_PREFIX}@oceanography.example.edu",
    f"{_SHARED_PREFIX}@climate-modelling.example.org",
)

_FIRST_NAMES = (
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy",
    "kim", "leo", "mallory", "nia", "olivia", "peggy", "quinn", "rupert", "sybil", "trent",
    "uma", "victor", "walter", "xena", "yara", "zane", "amir", "bea", "chen", "dina",
)  # fmt: skip


def escape_username(username: str) -> str:
    """KubeSpawner's escaping: pod names and home directories use it in full."""
    escaped: str = escapism.escape(username, safe=_SAFE, escape_char="-")
    return escaped.lower()


def username_label_value(username: str) -> str:
    """The `hub.jupyter.org/username` label value: the escaped name cut to 63 characters."""
    return escape_username(username)[:LABEL_VALUE_LIMIT]


def hub_usernames(count: int, hub_position: int, rng: random.Random) -> list[str]:
    """`count` distinct usernames for one hub: the colliding pair, awkward names, plain names.

    The colliding pair sits at positions 1 and 2 (when there are at least four users), so every
    such hub has it; the awkward names rotate by hub so that a few hubs cover all of them.
    """
    names: list[str] = []
    awkward_count = min(len(AWKWARD_USERNAMES), max(1, count // 2))
    offset = (hub_position * 3) % len(AWKWARD_USERNAMES)
    awkward = iter(
        [AWKWARD_USERNAMES[(offset + i) % len(AWKWARD_USERNAMES)] for i in range(awkward_count)]
    )
    while len(names) < count:
        if len(names) in (1, 2) and count >= 4:
            names.append(COLLIDING_USERNAMES[len(names) - 1])
        else:
            names.append(next(awkward, None) or _plain_username(rng, taken=set(names)))
    return names


def _plain_username(rng: random.Random, taken: set[str]) -> str:
    while True:
        first = rng.choice(_FIRST_NAMES)
        candidate = first if rng.randrange(4) == 0 else f"{first}{rng.randrange(1, 1000)}"
        if candidate not in taken:
            return candidate
