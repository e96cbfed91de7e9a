"""Deterministic randomness per entity.

Every cluster, hub, user and pod gets its own `random.Random`, seeded from a hash of the scenario
seed and the entity's name. A writer can then regenerate one user's sessions at any time, in any
pass, and get the same values: nothing has to be kept in memory between metric families.
"""

from __future__ import annotations

import hashlib
import random


def derive_seed(*parts: object) -> int:
    """A 128-bit integer that depends only on the parts, stable across processes and machines."""
    key = "\x1f".join(str(part) for part in parts).encode("utf-8")
    return int.from_bytes(hashlib.blake2b(key, digest_size=16).digest(), "big")


def entity_random(*parts: object) -> random.Random:
    """A generator of its own for one entity (e.g. seed, cluster, hub, user)."""
    return random.Random(derive_seed(*parts))


def stable_hex(length: int, *parts: object) -> str:
    """Lower-case hex digits derived from the parts, for names that look like real hashes."""
    digest = hashlib.blake2b("\x1f".join(str(part) for part in parts).encode("utf-8")).hexdigest()
    return digest[:length]
