"""Communities, hubs and hub users as the API shows them."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from app.costapi.schemas import Amount, Page


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True, from_attributes=True)


class HubOut(_Out):
    model_config = ConfigDict(
        frozen=True,
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "id": 1,
                    "name": "ocean",
                    "cluster": "demo-cluster",
                    "namespace": "ocean",
                    "community_id": "ocean-lab",
                    "currency": "USD",
                    "monthly_budget": "2500.00",
                    "active": True,
                }
            ]
        },
    )

    id: int
    name: str
    cluster: str
    namespace: str
    community_id: str
    currency: str = Field(description="The community's currency, which the budget is in.")
    monthly_budget: Amount | None = Field(
        description="The hub's monthly budget, if one is configured."
    )
    active: bool = Field(description="False once the hub left the configuration.")


class CommunityOut(_Out):
    model_config = ConfigDict(
        frozen=True,
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "id": "ocean-lab",
                    "name": "Ocean Lab",
                    "currency": "USD",
                    "plan": "cost-recovery",
                    "billing_email": "finance@ocean-lab.example.org",
                    "active": True,
                    "hub_count": 1,
                }
            ]
        },
    )

    id: str
    name: str
    currency: str
    plan: str
    billing_email: str
    active: bool
    hub_count: int


class CommunityDetail(CommunityOut):
    hubs: list[HubOut]


class CommunityList(_Out):
    communities: list[CommunityOut]
    page: Page


class HubList(_Out):
    hubs: list[HubOut]
    page: Page


class HubUserOut(_Out):
    id: int
    username: str = Field(description="The JupyterHub username, unescaped.")
    first_seen_at: datetime


class HubUserList(_Out):
    hub_id: int
    users: list[HubUserOut]
    page: Page
