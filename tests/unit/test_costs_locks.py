"""The advisory lock keys that make imports of one source take turns."""

from __future__ import annotations

from app.ingestion.service import source_lock_key


def test_a_source_lock_key_is_the_same_in_every_process() -> None:
    # Advisory locks are shared by every process on the database, so the key cannot depend on
    # anything per process (Python's hash() is salted per process): these are fixed forever.
    assert source_lock_key("costs", "gcp-billing-export:01A2B3-C4D5E6-F7A8B9") == (
        -2680220381691496913
    )
    assert source_lock_key("usage", "atlantic") == -6363012468467473764


def test_each_source_has_its_own_bigint_key() -> None:
    keys = {
        source_lock_key(kind, source)
        for kind in ("costs", "usage")
        for source in ("atlantic", "atlantic2", "gcp-billing-export:01A2B3", "", "usage")
    }
    assert len(keys) == 10  # kind and source are kept apart: ("costs", "usage") is not ("cos", ...)
    assert all(-(2**63) <= key < 2**63 for key in keys)
