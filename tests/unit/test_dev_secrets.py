from pathlib import Path

from pydantic import SecretStr

from infra.dev_secrets import with_development_defaults, with_development_secrets
from infra.settings import SecretsSettings, Settings, WebhookSettings


def test_development_gets_stable_generated_secrets(tmp_path: Path) -> None:
    settings = Settings(env="development", state_dir=tmp_path, secrets=SecretsSettings())
    first = with_development_secrets(settings)
    again = with_development_secrets(settings)
    secret = first.secrets.gateway_secret.get_secret_value()
    assert len(secret) >= 24
    assert again.secrets.gateway_secret.get_secret_value() == secret
    assert first.secrets.dashboard_auth.get_secret_value().startswith("operator:")
    assert (tmp_path / "dev-secrets.json").stat().st_mode & 0o077 == 0


def test_configured_secrets_and_other_environments_are_left_alone(tmp_path: Path) -> None:
    configured = Settings(
        env="development",
        state_dir=tmp_path,
        secrets=SecretsSettings(
            gateway_secret=SecretStr("mine-1234"), dashboard_auth=SecretStr("a:b")
        ),
    )
    assert with_development_secrets(configured) is configured
    test_env = Settings(env="test", state_dir=tmp_path, secrets=SecretsSettings())
    assert with_development_secrets(test_env).secrets.gateway_secret.get_secret_value() == ""
    assert not (tmp_path / "dev-secrets.json").exists()


def test_development_lets_webhooks_reach_the_local_sandbox_unless_set(tmp_path: Path) -> None:
    relaxed = with_development_defaults(Settings(env="development", state_dir=tmp_path))
    assert relaxed.webhooks.allow_http
    assert relaxed.webhooks.allow_private
    strict = with_development_defaults(
        Settings(
            env="development", state_dir=tmp_path, webhooks=WebhookSettings(allow_private=False)
        )
    )
    assert strict.webhooks.allow_http
    assert not strict.webhooks.allow_private
    production_like = with_development_defaults(Settings(env="test", state_dir=tmp_path))
    assert not production_like.webhooks.allow_private
