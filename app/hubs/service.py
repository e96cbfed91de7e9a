"""Keep the database's clusters, communities and hubs in step with the configuration."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.attribution.models import Allocation
from app.config import ConfigError, HubmeterConfig
from app.hubs.models import Cluster, Community, Hub, HubUser
from app.usage.models import UsageHour


@dataclass
class SyncReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    deactivated: list[str] = field(default_factory=list)


def sync_from_config(*, session: Session, config: HubmeterConfig, now: datetime) -> SyncReport:
    """Upsert clusters, communities and hubs from the configuration.

    Nothing is deleted: a hub or community that leaves the configuration is marked inactive, so
    its history, allocations and invoices stay intact. A hub that has usage or allocations never
    changes community (ConfigError): its history would follow it to the new community.
    """
    report = SyncReport()
    clusters = {c.name: c for c in session.scalars(select(Cluster))}
    for wanted in config.clusters:
        cluster = clusters.get(wanted.name)
        if cluster is None:
            session.add(Cluster(name=wanted.name, provider=wanted.provider.value, updated_at=now))
            report.created.append(f"cluster {wanted.name}")
        elif cluster.provider != wanted.provider.value:
            cluster.provider = wanted.provider.value
            cluster.updated_at = now
            report.updated.append(f"cluster {wanted.name}")

    communities = {c.id: c for c in session.scalars(select(Community))}
    for c in config.communities:
        values = {
            "name": c.name,
            "billing_email": c.billing_email,
            "currency": c.currency,
            "plan": c.plan,
            "active": True,
        }
        community = communities.get(c.id)
        if community is None:
            session.add(Community(id=c.id, updated_at=now, **values))
            report.created.append(f"community {c.id}")
        elif _apply(community, values):
            community.updated_at = now
            report.updated.append(f"community {c.id}")
    wanted_communities = {c.id for c in config.communities}
    for community_id, community in communities.items():
        if community_id not in wanted_communities and community.active:
            community.active = False
            community.updated_at = now
            report.deactivated.append(f"community {community_id}")
    session.flush()

    hubs = {(h.cluster_name, h.name): h for h in session.scalars(select(Hub))}
    for h in config.hubs:
        values = {
            "namespace": h.k8s_namespace,
            "community_id": h.community,
            "monthly_budget": h.monthly_budget,
            "active": True,
        }
        hub = hubs.get((h.cluster, h.name))
        if hub is not None and hub.community_id != h.community:
            _refuse_to_move_history(session, hub, h.community)
        if hub is None:
            session.add(Hub(cluster_name=h.cluster, name=h.name, updated_at=now, **values))
            report.created.append(f"hub {h.cluster}/{h.name}")
        elif _apply(hub, values):
            hub.updated_at = now
            report.updated.append(f"hub {h.cluster}/{h.name}")
    wanted_hubs = {(h.cluster, h.name) for h in config.hubs}
    for key, hub in hubs.items():
        if key not in wanted_hubs and hub.active:
            hub.active = False
            hub.updated_at = now
            report.deactivated.append(f"hub {key[0]}/{key[1]}")
    session.flush()
    return report


def _refuse_to_move_history(session: Session, hub: Hub, wanted: str) -> None:
    """ConfigError if `hub` has usage or allocations: they belong to its current community.

    Usage rows carry no community of their own, and attribution gives every day it (re)runs to
    the hub's community of the moment, so moving a hub with history would show the old
    community's costs, usage and usernames to the new one. A hub with no data yet may move.
    """
    has_history = any(
        session.scalar(select(model.id).where(model.hub_id == hub.id).limit(1)) is not None
        for model in (UsageHour, Allocation)
    )
    if not has_history:
        return
    old = hub.community_id
    raise ConfigError(
        f"hub {hub.cluster_name}/{hub.name} cannot move from community {old} to {wanted}: it "
        f"has usage or allocations, and its history stays with {old}. If {wanted} is a "
        f"mistake, put {old} back. To bill {wanted} from now on, give the hub a new name (and "
        "its own Kubernetes namespace) in the configuration, or deactivate it (remove its "
        f"entry: it is retired and keeps its history with {old}) and re-add it for {wanted} "
        "under a new name and namespace: a cluster's hub names and namespaces, retired hubs' "
        "included, each identify one hub."
    )


def _apply(row: object, values: dict[str, object]) -> bool:
    changed = False
    for name, value in values.items():
        if getattr(row, name) != value:
            setattr(row, name, value)
            changed = True
    return changed


def hubs_by_namespace(*, session: Session, cluster_name: str) -> dict[str, Hub]:
    """The active hubs of a cluster, keyed by Kubernetes namespace."""
    rows = session.scalars(select(Hub).where(Hub.cluster_name == cluster_name, Hub.active))
    return {hub.namespace: hub for hub in rows}


def community_names(
    *, session: Session, community_ids: Iterable[str] | None = None
) -> dict[str, str]:
    """Community names by id: of `community_ids`, or of every community when None."""
    query = select(Community.id, Community.name)
    if community_ids is not None:
        ids = sorted(set(community_ids))
        if not ids:
            return {}
        query = query.where(Community.id.in_(ids))
    return dict(session.execute(query).all())


def usernames_by_namespace(*, session: Session, hubs: Mapping[str, Hub]) -> dict[str, list[str]]:
    """The users each hub (keyed by its namespace) has had so far."""
    namespace_of = {hub.id: namespace for namespace, hub in hubs.items()}
    out: dict[str, list[str]] = {namespace: [] for namespace in hubs}
    if not namespace_of:
        return out
    rows = session.execute(
        select(HubUser.hub_id, HubUser.username).where(HubUser.hub_id.in_(sorted(namespace_of)))
    )
    for hub_id, username in rows:
        out[namespace_of[hub_id]].append(username)
    return out


def get_or_create_users(
    *, session: Session, wanted: set[tuple[int, str]], now: datetime
) -> tuple[dict[tuple[int, str], int], int]:
    """Ids of the (hub id, canonical username) pairs in `wanted`, creating the users seen for the
    first time (one query for all hubs); also how many were new."""
    if not wanted:
        return {}, 0
    hub_ids = {hub_id for hub_id, _name in wanted}
    existing: dict[tuple[int, str], int] = {
        (hub_id, username): user_id
        for hub_id, username, user_id in session.execute(
            select(HubUser.hub_id, HubUser.username, HubUser.id).where(HubUser.hub_id.in_(hub_ids))
        ).all()
    }
    missing = sorted(wanted - existing.keys())
    if missing:
        new_users = [
            HubUser(hub_id=hub_id, username=username, first_seen_at=now)
            for hub_id, username in missing
        ]
        session.add_all(new_users)
        session.flush()
        existing.update({(user.hub_id, user.username): user.id for user in new_users})
    return {key: existing[key] for key in wanted}, len(missing)
