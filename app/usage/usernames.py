"""The one canonical user behind a server pod or a home directory.

KubeSpawner (before its "safe" slug scheme) escapes a JupyterHub username into `[a-z0-9-]`, with
`-` as the escape character and the hex digits lower-cased: `Alice.Smith@example.org` becomes
`-41lice-2e-53mith-40example-2eorg`. Pod names (`jupyter-<escaped>[--<server>]`) and home
directories carry the whole escaped name; the `hub.jupyter.org/username` label is cut at 63
characters, the Kubernetes limit, so two long names can share a label. The raw name is only
certain where kube-state-metrics exports the `hub.jupyter.org/username` annotation.

KubeSpawner 7's "safe" slug scheme keeps a name that is already a valid Kubernetes name as it
is (`student-001`), and turns any other into a stripped name and a hash (`Alice.Smith@example.org`
becomes `alice-smith-example-o---323a0b32`): it cannot be unescaped, and a name kept as written
can look like a legacy escape (`-00` would be a NUL byte). So a slug is first looked up among the
usernames hubmeter knows (`KnownUsers`: the annotations of the window and the hub's users so far,
under the slugs either scheme gives them); then taken as a legacy escape only if it decodes to a
name a person could have (no control characters, no white space); then kept as written if it is a
valid slug of the safe scheme.

Compute and storage must land on the same user, so every path below ends in the raw username:
the annotation as it is, the known name a slug stands for, or the escaped form unescaped.
"""

from __future__ import annotations

import hashlib
import re
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

import escapism

LABEL_VALUE_LIMIT = 63
ESCAPE_CHAR = "-"
SAFE_CHARACTERS = frozenset(string.ascii_lowercase + string.digits)
POD_NAME_PREFIX = "jupyter-"
NAMED_SERVER_SEPARATOR = "--"  # never inside an escaped name: '-' is always followed by hex


class UsernameSource(StrEnum):
    """Where a pod's username came from, from most to least certain."""

    annotation = "annotation"  # the raw name, exported by kube-state-metrics
    label = "label"  # the escaped label, complete, unescaped
    pod_name = "pod_name"  # the label was cut at 63; the pod name carries the whole name
    truncated_label = "truncated_label"  # cut at 63 and nothing better: users may be merged
    pod_name_only = "pod_name_only"  # no label and no annotation at all


@dataclass(frozen=True, slots=True)
class ResolvedUsername:
    username: str
    source: UsernameSource


def escape_username(username: str) -> str:
    """KubeSpawner's escaping of a username, as in pod names and home directories."""
    escaped: str = escapism.escape(username, safe=SAFE_CHARACTERS, escape_char=ESCAPE_CHAR)
    return escaped.lower()


def strict_unescape(escaped: str) -> str | None:
    """The username `escaped` is the escaping of, or None if it is not an escaped username (or
    decodes to something no person is called: control characters, white space)."""
    if not escaped or any(ch not in SAFE_CHARACTERS and ch != ESCAPE_CHAR for ch in escaped):
        return None
    try:
        raw: str = escapism.unescape(escaped, escape_char=ESCAPE_CHAR)
    except (ValueError, UnicodeDecodeError):
        return None
    return raw if escape_username(raw) == escaped and plausible_username(raw) else None


def plausible_username(name: str) -> bool:
    """Whether a person's username could be `name`: printable, without white space. What a
    slug of the safe scheme decodes to when misread as a legacy escape (`student-001` as
    `student<NUL>1`, `alice-2020` as `alice 20`) is not."""
    return bool(name) and name.isprintable() and not any(ch.isspace() for ch in name)


# --- KubeSpawner 7's "safe" slug scheme (kubespawner.slugs) ------------------------------------

_SAFE_HASH_LENGTH = 8
_SAFE_DEFAULT_LENGTH = 32
_OBJECT_NAME = re.compile(r"[a-z][a-z0-9-]*[a-z0-9]|[a-z]")
_LABEL_VALUE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?")
_NOT_ALPHANUMERIC = re.compile(r"[^a-z0-9]+")
_HASHED_SLUG = re.compile(r"[a-z][a-z0-9-]*---[0-9a-f]{8}")


def _is_object_name(name: str) -> bool:
    return len(name) <= LABEL_VALUE_LIMIT and _OBJECT_NAME.fullmatch(name) is not None


def _is_label_value(name: str) -> bool:
    return len(name) <= LABEL_VALUE_LIMIT and _LABEL_VALUE.fullmatch(name) is not None


def safe_slug(name: str, *, label: bool = False) -> str:
    """KubeSpawner's `safe_slug`: `name` itself where it is already valid (an object name, or a
    label value with `label`) and holds no `--`; else its safe part and a hash of it."""
    valid = _is_label_value(name) if label else _is_object_name(name)
    if valid and "--" not in name:
        return name
    digest = hashlib.sha256(name.encode("utf8")).hexdigest()[:_SAFE_HASH_LENGTH]
    room = _SAFE_DEFAULT_LENGTH - (_SAFE_HASH_LENGTH + 3)
    stripped = _NOT_ALPHANUMERIC.sub("-", name.lower()).lstrip("-")[:room].rstrip("-")
    if stripped and not stripped[0].isalpha():
        stripped = "x-" + stripped[: room - 2]
    return f"{stripped or 'x'}---{digest}"


def slugs_of(username: str) -> set[str]:
    """Every form KubeSpawner may have written `username` in: its legacy escaping (and that cut
    to a label's 63 characters) and its safe slugs, as object name and as label value."""
    escaped = escape_username(username)
    return {
        escaped,
        escaped[:LABEL_VALUE_LIMIT],
        safe_slug(username),
        safe_slug(username, label=True),
    }


class KnownUsers:
    """The usernames hubmeter knows, found by any slug KubeSpawner writes them as. A slug two
    known names share (two long names cut to one label) stands for neither."""

    def __init__(self, usernames: Iterable[str] = ()) -> None:
        names = {name for name in usernames if name}
        by_slug: dict[str, str | None] = {}
        for name in sorted(names):
            for slug in slugs_of(name):
                by_slug[slug] = name if by_slug.get(slug, name) == name else None
        # A slug that is itself somebody's name is that person (a name kept as written).
        by_slug.update({name: name for name in names})
        self._by_slug = by_slug

    def get(self, slug: str) -> str | None:
        return self._by_slug.get(slug)

    def __len__(self) -> int:
        return len(self._by_slug)


def lenient_unescape(escaped: str) -> str:
    """Unescape as much as decodes; keep the rest as written.

    A label cut at 63 characters can end inside an escape sequence or a multi-byte character
    (`jos-c3` of `josé`); its decodable head is unescaped and its tail kept verbatim, so the
    name stays recognisable and the same label always gives the same name. A label that would
    decode to a name no person has (a control character, white space) is not an escape at all,
    and is kept as written.
    """
    for cut in range(len(escaped), -1, -1):
        try:
            head: str = escapism.unescape(escaped[:cut], escape_char=ESCAPE_CHAR)
        except (ValueError, UnicodeDecodeError):
            continue
        if head and not plausible_username(head):
            return escaped
        return head + escaped[cut:]
    return escaped


def resolve_pod_username(
    *,
    annotation: str | None,
    label: str | None,
    pod: str,
    known: KnownUsers | Mapping[str, str] | None = None,
) -> ResolvedUsername:
    """The canonical username of a single-user server pod."""
    if annotation:
        return ResolvedUsername(annotation, UsernameSource.annotation)
    from_pod = _escaped_name_in_pod_name(pod)
    if not label:
        if from_pod is not None:
            return ResolvedUsername(
                _username_of_slug(from_pod, known) or lenient_unescape(from_pod),
                UsernameSource.pod_name_only,
            )
        return ResolvedUsername(pod, UsernameSource.pod_name_only)
    if len(label) < LABEL_VALUE_LIMIT:
        return ResolvedUsername(
            _username_of_slug(label, known) or lenient_unescape(label), UsernameSource.label
        )
    # Possibly cut: only a known user's slug is certain.
    named = known.get(label) if known is not None else None
    if named is not None:
        return ResolvedUsername(named, UsernameSource.label)
    # The label may have been cut. The default pod name template keeps the whole escaped name;
    # trust it only when it agrees with the label and is a valid escaping.
    if from_pod is not None and from_pod.startswith(label):
        raw = strict_unescape(from_pod)
        if raw is not None:
            return ResolvedUsername(raw, UsernameSource.pod_name)
    return ResolvedUsername(lenient_unescape(label), UsernameSource.truncated_label)


def _escaped_name_in_pod_name(pod: str) -> str | None:
    """`<escaped>` of a pod named `jupyter-<escaped>` or `jupyter-<escaped>--<server name>`."""
    if not pod.startswith(POD_NAME_PREFIX):
        return None
    name = pod[len(POD_NAME_PREFIX) :].split(NAMED_SERVER_SEPARATOR, 1)[0]
    return name or None


def _username_of_slug(slug: str, known: KnownUsers | Mapping[str, str] | None) -> str | None:
    """The username a whole (uncut) pod label or pod name slug stands for: a known user's, a
    legacy escape that decodes to a plausible name, or the slug itself where it is a slug of
    the safe scheme (a server pod's label always names a user)."""
    named = _named_by(slug, known)
    if named is None and _is_object_name(slug) and "--" not in slug:
        return slug
    return named


def home_directory_owner(
    directory: str, known: KnownUsers | Mapping[str, str] | None = None
) -> str | None:
    """The user whose home `directory` (a dirsize `directory` label) is, or None when it is no
    user's home (a hub's `_shared` or `shared-data` directory, `lost+found`, ...): its bytes
    stay with the hub.

    A known user's slug, a legacy escape of a plausible name, or a hashed slug of the safe
    scheme is a user's home. A name the safe scheme would keep as written (`student-001`) is
    one only once that user is known (has run a server): a hub's own directories look just
    the same (`course-materials`)."""
    return _named_by(directory, known)


def _named_by(slug: str, known: KnownUsers | Mapping[str, str] | None) -> str | None:
    """The user a slug certainly names: a known user's slug, a legacy escape of a plausible
    name, or a hashed slug of the safe scheme (whose name cannot be recovered from it)."""
    if known is not None:
        named = known.get(slug)
        if named is not None:
            return named
    raw = strict_unescape(slug)
    if raw is not None:
        return raw
    if _HASHED_SLUG.fullmatch(slug):
        return slug
    return None
