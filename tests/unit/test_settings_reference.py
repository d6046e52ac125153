from infra.settings_reference import README, render, with_reference


def test_the_readme_lists_every_setting_with_its_current_default() -> None:
    readme = README.read_text()
    assert with_reference(readme) == readme, "run `simfleet config reference --write`"


def test_the_reference_names_the_original_variables() -> None:
    table = render()
    for name in (
        "GATEWAY_SECRET",
        "DASHBOARD_AUTH",
        "HX_GRANT_PASSWORD",
        "SK_HOST",
        "SHEET_CSV_URL",
        "KAFKA_BOOTSTRAP_SERVERS",
        "DATABASE_URL",
        "TOPIC_PREFIX",
    ):
        assert f"| `{name}` |" in table
