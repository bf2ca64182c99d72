"""Settings: environment over .env, production guard, the shared development secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from chat_api.config import ConfigError, Quota, RateLimits, Settings

pytestmark = pytest.mark.no_store
SECRET = "s" * 40


def test_defaults(tmp_path: Path) -> None:
    settings = Settings.from_env({"DATA_DIR": str(tmp_path)}, env_file=None)
    assert settings.mongodb_uri is None
    assert settings.store_kind == "embedded"
    assert settings.mongodb_db == "chat"
    assert settings.jwt_ttl == 7 * 24 * 3600
    assert settings.bcrypt_rounds == 12
    assert settings.cors_origins == ()
    assert (settings.host, settings.port, settings.web_concurrency) == ("127.0.0.1", 7001, 1)
    assert settings.rate_limits == RateLimits()
    assert settings.rate_limits.enabled
    assert (settings.proxies_count, settings.real_ip_header, settings.forwarded_secret) == (0, None, None)


def test_environment_wins_over_env_file(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(f"MONGODB_DB=from_file\nPORT=9000\nJWT_SECRET={SECRET}\n")
    settings = Settings.from_env({"PORT": "8000"}, env_file=env_file)
    assert settings.mongodb_db == "from_file"
    assert settings.port == 8000


def test_values_are_parsed(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {
            "MONGODB_URI": "mongodb://db.example:27017",
            "JWT_SECRET": SECRET,
            "JWT_TTL": "12h",
            "BCRYPT_ROUNDS": "10",
            "CORS_ORIGINS": "http://127.0.0.1:8080, https://chat.example/ ,",
            "WEB_CONCURRENCY": "4",
        },
        env_file=None,
    )
    assert settings.store_kind == "mongodb"
    assert settings.jwt_ttl == 12 * 3600
    assert settings.bcrypt_rounds == 10
    assert settings.cors_origins == ("http://127.0.0.1:8080", "https://chat.example")
    assert settings.web_concurrency == 4


def test_rate_limits_and_proxy_trust_are_parsed() -> None:
    settings = Settings.from_env(
        {
            "JWT_SECRET": SECRET,
            "RATE_LIMITS": "off",
            "RATE_LIMIT_LOGIN": "5/30s",
            "RATE_LIMIT_LOGIN_ACCOUNT": " 50 / 1h ",
            "RATE_LIMIT_LOGIN_FAILURE_COST": "3",
            "RATE_LIMIT_REGISTER": "2/1d",
            "RATE_LIMIT_CHECKS": "100/90",
            "PROXIES_COUNT": "1",
            "REAL_IP_HEADER": "X-Real-IP",
            "FORWARDED_SECRET": "proxy-secret",
        },
        env_file=None,
    )
    assert settings.rate_limits == RateLimits(
        enabled=False,
        login=Quota(5, 30),
        login_account=Quota(50, 3600),
        login_failure_cost=3,
        register=Quota(2, 86400),
        checks=Quota(100, 90),
    )
    assert (settings.proxies_count, settings.real_ip_header, settings.forwarded_secret) == (
        1,
        "X-Real-IP",
        "proxy-secret",
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PORT", "http"),
        ("PORT", "70000"),
        ("BCRYPT_ROUNDS", "3"),
        ("JWT_TTL", "soon"),
        ("JWT_TTL", "0"),
        ("RATE_LIMITS", "maybe"),
        ("RATE_LIMIT_LOGIN", "100"),
        ("RATE_LIMIT_LOGIN", "many/15m"),
        ("RATE_LIMIT_LOGIN_ACCOUNT", "0/15m"),
        ("RATE_LIMIT_REGISTER", "10/0"),
        ("RATE_LIMIT_REGISTER", "10/2d"),
        ("RATE_LIMIT_CHECKS", "10/soon"),
        ("RATE_LIMIT_LOGIN_FAILURE_COST", "0"),
        ("PROXIES_COUNT", "-1"),
        ("REAL_IP_HEADER", "X Real IP"),
    ],
)
def test_malformed_values_are_refused_with_their_name(name: str, value: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value, "JWT_SECRET": SECRET}, env_file=None)


def test_production_requires_jwt_secret(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="JWT_SECRET is not set"):
        Settings.from_env(
            {"ENV": "production", "MONGODB_URI": "mongodb://db.example", "DATA_DIR": str(tmp_path)}, env_file=None
        )
    assert not (tmp_path / ".jwt_secret").exists()


def test_production_requires_mongodb_uri(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="MONGODB_URI is not set"):
        Settings.from_env({"ENV": "production", "JWT_SECRET": SECRET}, env_file=None)


def test_production_with_both_is_fine() -> None:
    settings = Settings.from_env(
        {"ENV": "production", "JWT_SECRET": SECRET, "MONGODB_URI": "mongodb://db.example"}, env_file=None
    )
    assert settings.is_production
    assert settings.jwt_secret == SECRET


def test_short_jwt_secret_is_refused() -> None:
    with pytest.raises(ConfigError, match="at least 32 bytes"):
        Settings.from_env({"JWT_SECRET": "short"}, env_file=None)


def test_development_secret_is_generated_once_and_shared(tmp_path: Path) -> None:
    first = Settings.from_env({"DATA_DIR": str(tmp_path)}, env_file=None)
    second = Settings.from_env({"DATA_DIR": str(tmp_path)}, env_file=None)
    assert first.jwt_secret == second.jwt_secret
    assert len(first.jwt_secret) >= 32
    assert (tmp_path / ".jwt_secret").stat().st_mode & 0o077 == 0
    other = Settings.from_env({"DATA_DIR": str(tmp_path / "elsewhere")}, env_file=None)
    assert other.jwt_secret != first.jwt_secret


def test_log_settings_are_validated_and_normalised(tmp_path: Path) -> None:
    defaults = Settings.from_env({"DATA_DIR": str(tmp_path)}, env_file=None)
    assert (defaults.log_level, defaults.log_format) == ("INFO", "text")
    parsed = Settings.from_env({"LOG_LEVEL": "debug", "LOG_FORMAT": "JSON", "JWT_SECRET": SECRET}, env_file=None)
    assert (parsed.log_level, parsed.log_format) == ("DEBUG", "json")
    for name, value in (("LOG_LEVEL", "verbose"), ("LOG_FORMAT", "xml")):
        with pytest.raises(ConfigError, match=name):
            Settings.from_env({name: value, "JWT_SECRET": SECRET}, env_file=None)


def test_store_and_shutdown_timeouts_are_seconds(tmp_path: Path) -> None:
    defaults = Settings.from_env({"DATA_DIR": str(tmp_path)}, env_file=None)
    assert (defaults.store_timeout, defaults.shutdown_timeout) == (2.5, 25.0)
    settings = Settings.from_env(
        {"DATA_DIR": str(tmp_path), "STORE_TIMEOUT": "0.75", "SHUTDOWN_TIMEOUT": "10s"}, env_file=None
    )
    assert (settings.store_timeout, settings.shutdown_timeout) == (0.75, 10.0)


@pytest.mark.parametrize(
    ("name", "value"),
    [("STORE_TIMEOUT", "0"), ("STORE_TIMEOUT", "soon"), ("STORE_TIMEOUT", "nan"), ("SHUTDOWN_TIMEOUT", "-1")],
)
def test_malformed_timeouts_are_refused_with_their_name(name: str, value: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value, "DATA_DIR": str(tmp_path)}, env_file=None)


def test_direct_construction_reads_no_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`Settings(...)` takes only what it is given: tests never pick up a developer's settings."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text(f"PORT=9000\nMONGODB_DB=from_file\nJWT_SECRET={SECRET}\n")
    monkeypatch.setenv("PORT", "8000")
    monkeypatch.setenv("MONGODB_URI", "mongodb://db.example")
    settings = Settings()
    assert (settings.port, settings.mongodb_db, settings.mongodb_uri, settings.jwt_secret) == (7001, "chat", None, "")
    assert not (tmp_path / "data").exists()  # no development secret written either


def test_rate_limits_are_read_from_the_env_file_too(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        f"RATE_LIMITS=off\nRATE_LIMIT_LOGIN=5/30s\nCORS_ORIGINS=http://a.example/, http://b.example\nJWT_SECRET={SECRET}\n"
    )
    settings = Settings.from_env({"RATE_LIMIT_REGISTER": "2/1d"}, env_file=env_file)
    assert settings.rate_limits == RateLimits(enabled=False, login=Quota(5, 30), register=Quota(2, 86400))
    assert settings.cors_origins == ("http://a.example", "http://b.example")


def test_blank_values_are_unset_and_values_are_trimmed(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {"DATA_DIR": str(tmp_path), "PORT": "  ", "MONGODB_URI": "", "JWT_SECRET": " ", "WEB_CONCURRENCY": " 3 "},
        env_file=None,
    )
    assert (settings.port, settings.mongodb_uri, settings.web_concurrency) == (7001, None, 3)
    assert settings.jwt_secret == (tmp_path / ".jwt_secret").read_text().strip()


def test_variable_names_are_case_sensitive(tmp_path: Path) -> None:
    settings = Settings.from_env({"DATA_DIR": str(tmp_path), "port": "8000", "Mongodb_Db": "other"}, env_file=None)
    assert (settings.port, settings.mongodb_db) == (7001, "chat")
