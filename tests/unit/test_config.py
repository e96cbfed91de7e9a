"""The YAML configuration: the example is valid, and mistakes are reported where they are."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.config import EXAMPLE_CONFIG, ConfigError, Settings, load_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "hubmeter.yaml"
    path.write_text(text)
    return path


MINIMAL = """\
clusters:
  - name: east
    provider: aws
communities:
  - id: lab
    name: Lab
    billing_email: a@b.org
    plan: cost-recovery
hubs:
  - name: lab-hub
    cluster: east
    community: lab
"""


def test_the_example_configuration_is_valid() -> None:
    config = load_config(EXAMPLE_CONFIG)
    assert [hub.name for hub in config.hubs] == ["ocean", "climate"]
    assert config.hubs[1].k8s_namespace == "climate"
    assert config.clusters[0].openmetrics_file == EXAMPLE_CONFIG.parent / "demo-data/usage.om"


def test_defaults_fill_what_is_left_out(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL))
    assert config.communities[0].currency == "USD"
    assert config.attribution.compute_driver == "memory_request"
    assert config.ingestion.trailing_days == 5


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ("cluster: east\n    community", "cluster: west\n    community"),
            "hub 'lab-hub' names cluster 'west', expected one of ['east']",
        ),
        (("provider: aws", "provider: ibm"), ":3: clusters[0].provider: Input should be"),
        (("name: east", "name: East_1"), ":2: clusters[0].name: expected a slug"),
        (
            ("billing_email: a@b.org", "billing_email: nobody"),
            ":7: communities[0].billing_email: expected an e-mail",
        ),
        (
            ("    plan: cost-recovery", "    plan: cost-recovery\n    colour: blue"),
            ":9: communities[0].colour: unknown key",
        ),
        (("    plan: cost-recovery", "    plan: premium"), "names plan 'premium'"),
    ],
)
def test_mistakes_name_the_key_path_and_line(
    tmp_path: Path, change: tuple[str, str], expected: str
) -> None:
    path = write(tmp_path, MINIMAL.replace(*change, 1))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value)
    assert expected in str(info.value)


def test_broken_yaml_names_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "clusters:\n  - name: [unclosed\n")
    with pytest.raises(ConfigError, match=r"hubmeter.yaml:3:1: not valid YAML"):
        load_config(path)


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the configuration"):
        load_config(tmp_path / "nope.yaml")


def test_secrets_come_from_named_environment_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = MINIMAL.replace(
        "provider: aws",
        "provider: aws\n    prometheus:\n      url: https://prom.example.org\n"
        "      auth:\n        username: meter\n        password_env: PROM_PASSWORD",
    )
    auth = load_config(write(tmp_path, text)).clusters[0].prometheus.auth  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match="PROM_PASSWORD is not set"):
        auth.basic_auth()
    monkeypatch.setenv("PROM_PASSWORD", "s3cret")
    assert auth.basic_auth() == ("meter", "s3cret")
    assert "s3cret" not in repr(auth)


def test_duplicate_hubs_are_refused(tmp_path: Path) -> None:
    text = MINIMAL + "  - name: lab-hub\n    cluster: east\n    community: lab\n"
    with pytest.raises(ConfigError, match="'east/lab-hub' appears more than once"):
        load_config(write(tmp_path, text))


def test_production_refuses_sqlite() -> None:
    with pytest.raises(ValueError, match="production deployments use PostgreSQL"):
        Settings(environment="production")
    assert Settings(environment="production", database_url="postgresql://db/hubmeter")


@pytest.mark.parametrize(
    ("table", "accepted"),
    [
        ("my-billing-project.billing_export.gcp_billing_export_v1_01ABCD_234567_89EF01", True),
        ("example.com:my-project.billing.t_1", True),  # a domain-scoped project
        ("my-project.Data_Set_9.T", True),
        ("my-project.ds.t$20261001", False),  # a partition decorator is no table name
        ("my-project.ds.my-export", False),  # the query takes letters, digits and '_'
        ("my-project-.ds.t", False),  # a project id never ends with '-'
        ("proj.ds.t", False),  # project ids have 6 to 30 characters
        ("My-project.ds.t", False),
        ("my-project.ds", False),
        ("my-project.ds.t`; DROP TABLE x; --", False),
    ],
)
def test_a_bigquery_export_table_is_checked_as_the_query_checks_it(
    tmp_path: Path, table: str, accepted: bool
) -> None:
    from app.costs.gcp_export import validate_table

    text = MINIMAL + f"ingestion:\n  bigquery_exports:\n    - table: '{table}'\n"
    path = write(tmp_path, text)
    at_run_time = True
    try:
        validate_table(table)
    except ValueError:
        at_run_time = False
    assert at_run_time is accepted  # the table above says what the query accepts
    if accepted:
        assert load_config(path).ingestion.bigquery_exports[0].table == table
        return
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert (
        f"{path}:15: ingestion.bigquery_exports[0].table: expected a BigQuery table as "
        f"PROJECT.DATASET.TABLE" in str(info.value)
    )
    assert repr(table) in str(info.value)
