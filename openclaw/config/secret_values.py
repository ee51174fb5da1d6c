"""The secrets a configuration declares, as one :class:`SecretValues`."""

from __future__ import annotations

from openclaw.config.model import Config
from openclaw.core.secret_values import SecretValues, config_secret_values


def configured_secrets(config: Config) -> SecretValues:
    """The gateway token and password, every provider ``apiKey`` and the value
    of every configured provider header, whatever the header is called."""
    auth = config.gateway.auth
    return config_secret_values(
        gateway_token=auth.token,
        gateway_password=auth.password,
        providers=[(p.api_key, p.headers) for p in config.models.providers.values()],
    )
