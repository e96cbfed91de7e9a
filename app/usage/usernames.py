"""The one canonical user behind a server pod or a home directory.

KubeSpawner (before its "safe" slug scheme) escapes a JupyterHub username into `[a-z0-9-]`, with
`-` as the escape character and the hex digits lower-cased: `Alice.Smith@example.org` becomes
`-41lice-2e-53mith-40example-2eorg`. Pod names (`jupyter-<escaped>[--<server>]`) and home
directories carry the whole escaped name; the `hub.jupyter.org/username` label is cut at 63
characters, the Kubernetes limit, so two long names can share a label. The raw name is only
certain where kube-state-metrics exports the `hub.jupyter.org/username` annotation.

Compute and storage must land on the same user, so every path below ends in the raw username:
the annotation as it is, or the escaped form unescaped.
"""

from __future__ import annotations

import string
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
    """The username `escaped` is the escaping of, or None if it is not an escaped username."""
    if not escaped or any(ch not in SAFE_CHARACTERS and ch != ESCAPE_CHAR for ch in escaped):
        return None
    try:
        raw: str = escapism.unescape(escaped, escape_char=ESCAPE_CHAR)
    except (ValueError, UnicodeDecodeError):
        return None
    return raw if escape_username(raw) == escaped else None


def lenient_unescape(escaped: str) -> str:
    """Unescape as much as decodes; keep the rest as written.

    A label cut at 63 characters can end inside an escape sequence or a multi-byte character
    (`jos-c3` of `josé`); its decodable head is unescaped and its tail kept verbatim, so the
    name stays recognisable and the same label always gives the same name.
    """
    for cut in range(len(escaped), -1, -1):
        try:
            head: str = escapism.unescape(escaped[:cut], escape_char=ESCAPE_CHAR)
        except (ValueError, UnicodeDecodeError):
            continue
        return head + escaped[cut:]
    return escaped


def resolve_pod_username(
    *, annotation: str | None, label: str | None, pod: str
) -> ResolvedUsername:
    """The canonical username of a single-user server pod."""
    if annotation:
        return ResolvedUsername(annotation, UsernameSource.annotation)
    from_pod = _escaped_name_in_pod_name(pod)
    if not label:
        if from_pod is not None:
            return ResolvedUsername(lenient_unescape(from_pod), UsernameSource.pod_name_only)
        return ResolvedUsername(pod, UsernameSource.pod_name_only)
    if len(label) < LABEL_VALUE_LIMIT:
        return ResolvedUsername(lenient_unescape(label), UsernameSource.label)
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


def home_directory_owner(directory: str) -> str | None:
    """The user whose home `directory` (a dirsize `directory` label) is, or None when it is no
    user's home (a hub's `_shared` directory, `lost+found`, ...): its bytes stay with the hub."""
    return strict_unescape(directory)
