"""Settings: environment over .env, production guard, the shared development secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from chat_api.config import ConfigError, Quota, RateLimits, Settings, describe_redis_url

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


def test_fan_out_settings_default_to_one_instance_without_redis(tmp_path: Path) -> None:
    settings = Settings.from_env({"DATA_DIR": str(tmp_path)}, env_file=None)
    assert settings.redis_url is None
    assert (settings.event_partitions, settings.partitions) == (None, 1)  # the embedded store: one partition
    assert (settings.event_gap_wait, settings.store_pool_size) == (10.0, 20)
    on_mongodb = Settings.from_env({"MONGODB_URI": "mongodb://db.example", "JWT_SECRET": SECRET}, env_file=None)
    assert (on_mongodb.event_partitions, on_mongodb.partitions) == (None, 8)


def test_fan_out_settings_are_parsed(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {
            "DATA_DIR": str(tmp_path),
            "REDIS_URL": "rediss://:p4ss@redis.example:6380",
            "EVENT_PARTITIONS": "16",
            "EVENT_GAP_WAIT": "2.5s",
            "STORE_POOL_SIZE": "50",
        },
        env_file=None,
    )
    assert settings.redis_url == "rediss://:p4ss@redis.example:6380"
    assert (settings.event_partitions, settings.partitions) == (16, 16)
    assert (settings.event_gap_wait, settings.store_pool_size) == (2.5, 50)
    assert Settings(event_partitions=3).partitions == 3  # a set value wins on the embedded store too
    assert Settings(mongodb_uri="mongodb://db.example", event_partitions=1).partitions == 1


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("REDIS_URL", "localhost:6379"),
        ("REDIS_URL", "http://redis.example:6379"),
        ("REDIS_URL", "redis://"),
        ("EVENT_PARTITIONS", "0"),
        ("EVENT_PARTITIONS", "1025"),
        ("EVENT_PARTITIONS", "eight"),
        ("EVENT_GAP_WAIT", "0.01"),
        ("EVENT_GAP_WAIT", "121"),
        ("EVENT_GAP_WAIT", "nan"),
        ("STORE_POOL_SIZE", "0"),
        ("STORE_POOL_SIZE", "501"),
    ],
)
def test_malformed_fan_out_settings_are_refused_with_their_name(name: str, value: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value, "DATA_DIR": str(tmp_path)}, env_file=None)


def test_a_refused_redis_url_never_shows_its_password(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as refused:
        Settings.from_env(
            {"REDIS_URL": "http://user:s3cret-pw@redis.example:6379", "DATA_DIR": str(tmp_path)}, env_file=None
        )
    assert "s3cret-pw" not in str(refused.value)
    assert "redis.example:6379" in str(refused.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379"),
        (
            "rediss://:s3cret@ec2-1-2-3-4.compute-1.amazonaws.com:12345",
            "rediss://ec2-1-2-3-4.compute-1.amazonaws.com:12345",
        ),
        ("redis://default:p@ss@word@host:6379/2?ssl_cert_reqs=none", "redis://host:6379"),
        ("no scheme at all", "redis (unparsable URL)"),
    ],
)
def test_a_redis_url_is_described_without_credentials(url: str, shown: str) -> None:
    assert describe_redis_url(url) == shown


def test_metrics_are_off_without_a_token(tmp_path: Path) -> None:
    settings = Settings.from_env({"DATA_DIR": str(tmp_path)}, env_file=None)
    assert (settings.metrics_token, settings.metrics_dir) == (None, None)


def test_metrics_settings_are_parsed(tmp_path: Path) -> None:
    token = "t" * 16
    settings = Settings.from_env(
        {"DATA_DIR": str(tmp_path), "METRICS_TOKEN": token, "METRICS_DIR": str(tmp_path / "m")}, env_file=None
    )
    assert (settings.metrics_token, settings.metrics_dir) == (token, tmp_path / "m")


def test_a_metrics_token_under_16_characters_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="METRICS_TOKEN must be at least 16 characters"):
        Settings.from_env({"DATA_DIR": str(tmp_path), "METRICS_TOKEN": "t" * 15}, env_file=None)
