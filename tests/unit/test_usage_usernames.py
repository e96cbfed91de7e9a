"""One canonical user per hub: compute (pods) and storage (home directories) must land on the
same raw JupyterHub username, however awkward the name and whatever kube-state-metrics exports."""

from __future__ import annotations

import pytest

from app.usage.usernames import (
    LABEL_VALUE_LIMIT,
    KnownUsers,
    ResolvedUsername,
    UsernameSource,
    escape_username,
    home_directory_owner,
    lenient_unescape,
    resolve_pod_username,
    safe_slug,
    strict_unescape,
)

LONG_PREFIX = "christopher.alexander.montgomery-featherstonehaugh.research"
OCEAN = f"{LONG_PREFIX}@oceanography.example.edu"
CLIMATE = f"{LONG_PREFIX}@climate-modelling.example.org"

# (raw username, its escaped form as KubeSpawner writes it in pod names and home directories)
AWKWARD = [
    ("alice", "alice"),
    ("Alice.Smith@example.org", "-41lice-2e-53mith-40example-2eorg"),
    ("Bob_Jones", "-42ob-5f-4aones"),
    ("josé", "jos-c3-a9"),
    ("zoë", "zo-c3-ab"),
    ("李雷", "-e6-9d-8e-e9-9b-b7"),
    ("mary-ann", "mary-2dann"),
    ("CORP\\jdoe", "-43-4f-52-50-5cjdoe"),
    ("j.doe+hub@example.com", "j-2edoe-2bhub-40example-2ecom"),
    ("Ünal.Yılmaz@uni.example.de", "-c3-9cnal-2e-59-c4-b1lmaz-40uni-2eexample-2ede"),
    ("o.connor", "o-2econnor"),
    ("12345", "12345"),
]


@pytest.mark.parametrize(("username", "escaped"), AWKWARD)
def test_compute_and_storage_of_an_awkward_name_land_on_the_same_user(
    username: str, escaped: str
) -> None:
    assert escape_username(username) == escaped
    label = escaped[:LABEL_VALUE_LIMIT]
    pod = f"jupyter-{escaped}"
    with_annotation = resolve_pod_username(annotation=username, label=label, pod=pod)
    without_annotation = resolve_pod_username(annotation=None, label=label, pod=pod)
    assert with_annotation.username == username
    assert with_annotation.source is UsernameSource.annotation
    assert without_annotation.username == username
    assert home_directory_owner(escaped) == username


def test_names_whose_labels_are_cut_to_the_same_63_characters() -> None:
    ocean, climate = escape_username(OCEAN), escape_username(CLIMATE)
    label = ocean[:LABEL_VALUE_LIMIT]
    assert climate[:LABEL_VALUE_LIMIT] == label, "the test needs colliding labels"
    assert ocean != climate

    # The annotation tells them apart.
    for raw, escaped in ((OCEAN, ocean), (CLIMATE, climate)):
        resolved = resolve_pod_username(annotation=raw, label=label, pod=f"jupyter-{escaped}")
        assert resolved.username == raw

    # Without it, the pod name (jupyter-<whole escaped name>) still does, and agrees with the
    # home directory, so storage and compute meet on the same user.
    for raw, escaped in ((OCEAN, ocean), (CLIMATE, climate)):
        resolved = resolve_pod_username(annotation=None, label=label, pod=f"jupyter-{escaped}")
        assert resolved == ResolvedUsername(raw, UsernameSource.pod_name)
        assert home_directory_owner(escaped) == raw
    named_server = resolve_pod_username(annotation=None, label=label, pod=f"jupyter-{ocean}--gpu")
    assert named_server.username == OCEAN

    # With a custom pod name template nothing can: the two are one user, and that is reported.
    merged = [
        resolve_pod_username(annotation=None, label=label, pod=pod)
        for pod in ("custom-pod-1", "custom-pod-2")
    ]
    assert merged[0] == merged[1]
    assert merged[0].source is UsernameSource.truncated_label
    assert merged[0].username == lenient_unescape(label)
    assert merged[0].username.startswith("christopher.alexander.montgomery-")


def test_a_pod_name_that_disagrees_with_the_label_is_not_trusted() -> None:
    label = escape_username(OCEAN)[:LABEL_VALUE_LIMIT]
    resolved = resolve_pod_username(annotation=None, label=label, pod="jupyter-someone-else")
    assert resolved.source is UsernameSource.truncated_label


def test_a_label_cut_inside_a_multibyte_character_keeps_its_undecodable_tail() -> None:
    escaped = escape_username("a" * 57 + "李雷")  # the cut at 63 splits 李 (-e6-9d-8e)
    label = escaped[:LABEL_VALUE_LIMIT]
    assert label == "a" * 57 + "-e6-9d"
    assert lenient_unescape(label) == label
    assert lenient_unescape("jos-c3-a9-e6-9d") == "josé-e6-9d"
    resolved = resolve_pod_username(annotation=None, label=label, pod="renamed")
    assert resolved.username == label


def test_a_pod_without_label_or_annotation_falls_back_to_its_name() -> None:
    resolved = resolve_pod_username(annotation=None, label=None, pod="jupyter-jos-c3-a9")
    assert resolved == ResolvedUsername("josé", UsernameSource.pod_name_only)
    assert resolve_pod_username(annotation="", label="", pod="odd").username == "odd"


@pytest.mark.parametrize(
    "directory",
    ["_shared", "lost+found", ".snapshot", "Alice", "-", "", "x--y", "bad_zz"],
)
def test_directories_that_are_no_users_home_stay_with_the_hub(directory: str) -> None:
    assert home_directory_owner(directory) is None


# KubeSpawner 7's safe scheme: (raw username, its slug). Names that are valid Kubernetes names
# are kept as written, even where they look like a legacy escape (-00 is NUL, -20 a space).
SAFE = [
    ("student-001", "student-001"),
    ("dave-12", "dave-12"),
    ("alice-2020", "alice-2020"),
    ("bob-cafe", "bob-cafe"),
    ("Alice.Smith@example.org", "alice-smith-example-o---323a0b32"),
]


@pytest.mark.parametrize(("username", "slug"), SAFE)
def test_safe_slugs_are_kubespawners(username: str, slug: str) -> None:
    assert safe_slug(username) == slug


@pytest.mark.parametrize(("username", "slug"), SAFE)
def test_in_the_safe_scheme_compute_and_storage_land_on_the_same_user(
    username: str, slug: str
) -> None:
    # With the annotation exported (the window's, or the hub's users so far), both are the
    # raw name, whether or not the user's server runs in this window.
    known = KnownUsers([username, "someone-else"])
    with_annotation = resolve_pod_username(
        annotation=username, label=slug, pod=f"jupyter-{slug}", known=known
    )
    assert with_annotation.username == username
    assert home_directory_owner(slug, known) == username
    assert (
        resolve_pod_username(
            annotation=None, label=slug, pod=f"jupyter-{slug}", known=known
        ).username
        == username
    )
    # Without any annotation, a label that is no plausible legacy escape is its own name,
    # never a name with a control character in it; the home directory finds that user once
    # the user is known (the server ran in this window, or before).
    bare = resolve_pod_username(annotation=None, label=slug, pod=f"jupyter-{slug}").username
    assert bare.isprintable()
    assert " " not in bare
    assert home_directory_owner(slug, KnownUsers([bare])) == bare


def test_a_legacy_escape_of_an_implausible_name_is_kept_as_written() -> None:
    assert strict_unescape("student-001") is None
    assert lenient_unescape("student-001") == "student-001"
    # Real escapes still decode.
    assert home_directory_owner("jos-c3-a9") == "josé"
    # A hashed slug of the safe scheme is somebody's home, even before the user is known.
    assert home_directory_owner("alice-smith-example-o---323a0b32") == (
        "alice-smith-example-o---323a0b32"
    )


@pytest.mark.parametrize("directory", ["shared-data", "course-materials", "alice-2020"])
def test_a_directory_named_like_a_kept_slug_is_a_users_only_once_the_user_is_known(
    directory: str,
) -> None:
    """A hub's own directories look like names the safe scheme keeps as written: their bytes
    stay with the hub until a server of a user of that name has run."""
    assert home_directory_owner(directory, KnownUsers(["alice", "bob"])) is None
    assert home_directory_owner(directory, KnownUsers(["alice", directory])) == directory


def test_known_users_refuse_a_slug_two_of_them_share() -> None:
    ocean, climate = escape_username(OCEAN), escape_username(CLIMATE)
    known = KnownUsers([OCEAN, CLIMATE])
    assert known.get(ocean) == OCEAN
    assert known.get(climate) == CLIMATE
    assert known.get(ocean[:LABEL_VALUE_LIMIT]) is None


def test_unescaping_is_the_inverse_of_escaping_and_nothing_else() -> None:
    for username, escaped in AWKWARD:
        assert strict_unescape(escaped) == username
    # Upper-case hex is not what KubeSpawner writes, so it is not a home directory of anyone.
    assert strict_unescape("jos-C3-A9") is None
