"""Settings from the environment, and the operator's YAML configuration.

`Settings` is the only place that reads the environment. `HubmeterConfig` describes the clusters,
communities, hubs, plans and attribution options; `load_config` validates a YAML file and reports
any problem with its key path and line.
"""

from __future__ import annotations

import os
import re
from decimal import Decimal
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.costs.gcp_export import validate_table

DEFAULT_SQLITE_URL = "sqlite:///hubmeter.db"


class Settings(BaseSettings):
    """Process settings, read once from `HUBMETER_*` environment variables."""

    model_config = SettingsConfigDict(env_prefix="HUBMETER_", extra="ignore")

    environment: Literal["development", "production"] = "development"
    database_url: str = DEFAULT_SQLITE_URL
    config: Path | None = None
    log_format: Literal["text", "json"] = "text"
    log_level: str = "INFO"
    host: str = "127.0.0.1"
    port: int = 8000
    # A header in which an authenticating proxy names the caller (an e-mail or login); the
    # identity gets the role of its grant (`hubmeter tokens create --identity`). Off unless set:
    # only enable it when the proxy strips this header from clients.
    trusted_identity_header: str | None = None
    # Rows of computed cost answers each process keeps (0 turns the cache off).
    cost_cache_rows: int = Field(default=200_000, ge=0)
    bigquery_api_endpoint: str | None = None
    billing_catalog_api_endpoint: str | None = None
    scheduler_enabled: bool = False

    @model_validator(mode="after")
    def _refuse_sqlite_in_production(self) -> Settings:
        if self.environment != "production":
            return self
        if self.database_url.startswith("sqlite"):
            raise ValueError(
                "HUBMETER_DATABASE_URL points at SQLite; production deployments use PostgreSQL"
            )
        return self


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, validated on first use."""
    return Settings()


# --- the YAML configuration ---------------------------------------------------------------

SLUG = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
Slug = Annotated[str, Field(pattern=SLUG, description="lower-case letters, digits and '-'")]
EnvName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
CurrencyCode = Annotated[str, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code")]
NonNegativeDecimal = Annotated[Decimal, Field(ge=0, allow_inf_nan=False)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Provider(StrEnum):
    gcp = "gcp"
    aws = "aws"
    azure = "azure"
    oci = "oci"
    other = "other"


class PrometheusAuth(_Strict):
    """Credentials come from named environment variables, never from the file itself."""

    bearer_token_env: EnvName | None = None
    username: str | None = None
    password_env: EnvName | None = None

    @model_validator(mode="after")
    def _one_scheme(self) -> PrometheusAuth:
        if self.bearer_token_env and (self.username or self.password_env):
            raise ValueError("use either bearer_token_env or username/password_env, not both")
        if bool(self.username) != bool(self.password_env):
            raise ValueError("basic auth needs both username and password_env")
        return self

    def headers(self) -> dict[str, str]:
        """HTTP headers for a bearer token read from the environment now."""
        if self.bearer_token_env:
            return {"Authorization": f"Bearer {_read_env(self.bearer_token_env)}"}
        return {}

    def basic_auth(self) -> tuple[str, str] | None:
        """(user, password) for basic auth, the password read from the environment now."""
        if self.username and self.password_env:
            return (self.username, _read_env(self.password_env))
        return None


def _read_env(name: str) -> str:
    value = os.environ.get(name)
    if value is None:
        raise ConfigError(f"environment variable {name} is not set (named in the configuration)")
    return value


class PrometheusSource(_Strict):
    url: Annotated[str, Field(pattern=r"^https?://")]
    auth: PrometheusAuth = PrometheusAuth()
    verify_tls: bool = True
    timeout_seconds: Annotated[float, Field(gt=0, le=600)] = 60.0


class EstimateSkus(_Strict):
    """Which price-book SKUs price a cluster's metered requests for hours not billed yet
    (SKU ids or descriptions as in `hubmeter costs prices show`)."""

    cpu: str | None = None
    memory: str | None = None
    home_storage: str | None = None

    def chosen(self) -> dict[str, str]:
        return {name: sku for name, sku in self.model_dump().items() if sku}


class CostMatch(_Strict):
    """Which cost lines belong to a cluster (or to a dedicated hub)."""

    billing_accounts: list[str] = []
    projects: list[str] = Field(default=[], description="GCP project ids / FOCUS sub-accounts")
    labels: dict[str, str] = Field(default={}, description="label key -> value, all must match")
    estimate_skus: EstimateSkus = EstimateSkus()

    def is_empty(self) -> bool:
        return not (self.billing_accounts or self.projects or self.labels)


class Cluster(_Strict):
    name: Slug
    provider: Provider
    prometheus: PrometheusSource | None = None
    openmetrics_file: Path | None = Field(
        default=None, description="offline usage source: an OpenMetrics export of the same series"
    )
    scrape_interval_seconds: Annotated[int, Field(gt=0, le=3600)] = 60
    costs: CostMatch = CostMatch()


class Plan(_Strict):
    name: Slug
    description: str = ""
    markup_percent: NonNegativeDecimal = Decimal(0)
    monthly_fee: NonNegativeDecimal = Decimal(0)


class Community(_Strict):
    id: Slug
    name: str
    billing_email: Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]
    currency: CurrencyCode = "USD"
    plan: Slug


class Hub(_Strict):
    name: Slug
    cluster: Slug
    namespace: Slug | None = None
    community: Slug
    dedicated: CostMatch = Field(
        default=CostMatch(), description="projects/accounts whose whole cost is this hub's"
    )
    monthly_budget: NonNegativeDecimal | None = None

    @property
    def k8s_namespace(self) -> str:
        return self.namespace or self.name


class ComputeDriver(StrEnum):
    memory_request = "memory_request"
    max_request_usage = "max_request_usage"
    cpu_memory = "cpu_memory"


class SplitMode(StrEnum):
    usage = "usage"
    even = "even"
    weights = "weights"


class NoUsagePolicy(StrEnum):
    unattributed = "unattributed"
    even = "even"


class Attribution(_Strict):
    hub_label_keys: list[str] = ["2i2c:hub-name", "2i2c.org/hub-name", "hub"]
    namespace_label_keys: list[str] = ["k8s-namespace"]
    cluster_label_keys: list[str] = [
        "goog-k8s-cluster-name",
        "alpha.eksctl.io/cluster-name",
        "aws:eks:cluster-name",
    ]
    compute_driver: ComputeDriver = ComputeDriver.memory_request
    # cost of one vCPU-hour relative to one GiB-hour of memory, for the cpu_memory driver
    cpu_to_memory_price_ratio: Annotated[Decimal, Field(gt=0)] = Decimal("7.5")
    gpu_driver: bool = True
    idle_as_line: bool = False
    shared_split: SplitMode = SplitMode.usage
    hub_weights: dict[str, NonNegativeDecimal] = {}
    overhead_percent: NonNegativeDecimal = Decimal(0)
    no_usage: NoUsagePolicy = NoUsagePolicy.unattributed


class BigQueryExport(_Strict):
    """A GCP billing export table the scheduled cost job re-pulls."""

    table: str
    billing_project: str | None = Field(
        default=None, description="project the queries run (and are billed) in"
    )

    @field_validator("table")
    @classmethod
    def _a_table_the_query_accepts(cls, value: str) -> str:
        # The very check the query runs before the name goes into its SQL, so a name this file
        # accepts never fails at run time (and one it refuses would never have run).
        return validate_table(value)


class Ingestion(_Strict):
    trailing_days: Annotated[int, Field(ge=0, le=62)] = 5
    query_chunk_hours: Annotated[int, Field(ge=1, le=24 * 31)] = 24
    bigquery_exports: list[BigQueryExport] = []
    price_book_services: list[str] = Field(
        default=[], description="Cloud Billing Catalog services whose list prices to keep"
    )


class HubmeterConfig(_Strict):
    clusters: list[Cluster]
    plans: list[Plan] = [Plan(name="cost-recovery")]
    communities: list[Community]
    hubs: list[Hub]
    attribution: Attribution = Attribution()
    ingestion: Ingestion = Ingestion()

    @model_validator(mode="after")
    def _references(self) -> HubmeterConfig:
        _unique("clusters", [c.name for c in self.clusters])
        _unique("plans", [p.name for p in self.plans])
        _unique("communities", [c.id for c in self.communities])
        _unique("hubs", [f"{h.cluster}/{h.name}" for h in self.hubs])
        _unique("hub namespaces", [f"{h.cluster}/{h.k8s_namespace}" for h in self.hubs])
        clusters = {c.name for c in self.clusters}
        plans = {p.name for p in self.plans}
        communities = {c.id for c in self.communities}
        for community in self.communities:
            if community.plan not in plans:
                raise ValueError(
                    f"community {community.id!r} names plan {community.plan!r}, "
                    f"expected one of {sorted(plans)}"
                )
        for hub in self.hubs:
            if hub.cluster not in clusters:
                raise ValueError(
                    f"hub {hub.name!r} names cluster {hub.cluster!r}, "
                    f"expected one of {sorted(clusters)}"
                )
            if hub.community not in communities:
                raise ValueError(
                    f"hub {hub.name!r} names community {hub.community!r}, "
                    f"expected one of {sorted(communities)}"
                )
        return self

    @field_validator("clusters", "communities")
    @classmethod
    def _not_empty(cls, value: list[Any]) -> list[Any]:
        if not value:
            raise ValueError("at least one entry is required")
        return value

    def cluster(self, name: str) -> Cluster:
        for cluster in self.clusters:
            if cluster.name == name:
                return cluster
        raise ConfigError(f"no cluster named {name!r} in the configuration")

    def community(self, community_id: str) -> Community:
        for community in self.communities:
            if community.id == community_id:
                return community
        raise ConfigError(f"no community {community_id!r} in the configuration")

    def plan(self, name: str) -> Plan:
        for plan in self.plans:
            if plan.name == name:
                return plan
        raise ConfigError(f"no plan {name!r} in the configuration")

    def hubs_of(self, cluster: str) -> list[Hub]:
        return [hub for hub in self.hubs if hub.cluster == cluster]


def _unique(what: str, names: list[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"{what}: {name!r} appears more than once")
        seen.add(name)


class ConfigError(Exception):
    """A configuration problem a person can fix; the message says where and what."""


def load_config(path: Path) -> HubmeterConfig:
    """Read and validate a YAML configuration file, or raise ConfigError naming key and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the configuration: {exc.strerror}") from exc
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}: not valid YAML: {problem}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1:1: expected a mapping with clusters, communities and hubs")
    base = path.parent
    try:
        config = HubmeterConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe_errors(path, node, exc)) from exc
    return _resolve_paths(config, base)


def _resolve_paths(config: HubmeterConfig, base: Path) -> HubmeterConfig:
    """Relative file paths in the configuration are relative to the file, not the shell."""
    clusters = []
    for cluster in config.clusters:
        if cluster.openmetrics_file is not None and not cluster.openmetrics_file.is_absolute():
            cluster = cluster.model_copy(
                update={"openmetrics_file": base / cluster.openmetrics_file}
            )
        clusters.append(cluster)
    return config.model_copy(update={"clusters": clusters})


def _describe_errors(path: Path, root: yaml.Node | None, exc: ValidationError) -> str:
    lines = [f"{path}: {exc.error_count()} problem(s) in the configuration"]
    for error in exc.errors():
        loc = [part for part in error["loc"] if not str(part).startswith("function-after")]
        key_path = _format_loc(loc)
        line = _line_of(root, loc)
        where = f"{path}:{line}" if line else str(path)
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "string_pattern_mismatch":
            pattern = (error.get("ctx") or {}).get("pattern", "")
            expected = _PATTERN_NAMES.get(pattern, f"text matching {pattern}")
            message = f"expected {expected}, got {error['input']!r}"
        elif error["type"] == "extra_forbidden":
            message = "unknown key (check the spelling against the example configuration)"
        elif error["type"] == "missing":
            message = "required key is missing"
        lines.append(f"  {where}: {key_path or '(top level)'}: {message}")
    return "\n".join(lines)


_PATTERN_NAMES = {
    SLUG: "a slug of lower-case letters, digits and '-' (at most 63, as Kubernetes names)",
    r"^[A-Za-z_][A-Za-z0-9_]*$": "an environment variable name",
    r"^[A-Z]{3}$": "a three-letter ISO 4217 currency code such as USD",
    r"^https?://": "an http:// or https:// URL",
    r"^[^@\s]+@[^@\s]+\.[^@\s]+$": "an e-mail address",
}


def _format_loc(loc: list[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _line_of(node: yaml.Node | None, loc: list[Any]) -> int | None:
    """The 1-based line of the deepest YAML node the error location reaches."""
    best = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == part:
                    node = value
                    best = key.start_mark.line + 1
                    break
            else:
                return best
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                return best
            node = node.value[part]
            best = node.start_mark.line + 1
        else:
            return best
    return best


EXAMPLE_CONFIG = Path(__file__).parent / "examples" / "hubmeter.yaml"


def slugify(text: str) -> str:
    """A lower-case slug for generated names."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
