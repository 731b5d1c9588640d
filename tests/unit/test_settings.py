from __future__ import annotations

import pytest

from cronbus.streams.settings import SettingsError, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    import os

    for name in list(os.environ):
        if name.startswith("CRONBUS_"):
            monkeypatch.delenv(name)


def test_defaults_need_nothing():
    settings = load_settings()
    assert settings.broker_url == ["127.0.0.1:9092"]
    assert settings.faust_broker == "kafka://127.0.0.1:9092"


def test_brokers_are_a_comma_list_with_or_without_scheme(monkeypatch):
    monkeypatch.setenv("CRONBUS_BROKER_URL", "kafka://k1:9092, k2:9093")
    assert load_settings().broker_url == ["k1:9092", "k2:9093"]


@pytest.mark.parametrize("name, value, expected", [
    ("CRONBUS_BROKER_URL", "kafka://nohost", "host:port"),
    ("CRONBUS_PARTITIONS", "many", "whole number"),
    ("CRONBUS_PARTITIONS", "0", "whole number 1..1024"),
    ("CRONBUS_DEBOUNCE_WINDOW_S", "-1", "number > 0"),
    ("CRONBUS_REDIS_URL", "localhost:6379", "redis://"),
    ("CRONBUS_API_URL", "ftp://x", "GraphQL endpoint"),
    ("CRONBUS_LOG_LEVEL", "LOUD", "DEBUG, INFO"),
    ("CRONBUS_BRIDGE_PATTERNS", " , ", "PSUBSCRIBE patterns"),
    ("CRONBUS_BRIDGE_REDIS_URL", "localhost:6379", "pub/sub bridge"),
    ("CRONBUS_LOG_FORMAT", "xml", "text (readable"),
    ("CRONBUS_ALERT_WEBHOOK_URL", "hooks", "alerts are POSTed"),
    ("CRONBUS_SHUTDOWN_GRACE_S", "-1", "in-flight jobs finish"),
    ("CRONBUS_BREAKER_ERROR_RATE", "0", "a number > 0 and <= 1"),
    ("CRONBUS_BREAKER_ERROR_RATE", "50%", "opens the circuit"),
    ("CRONBUS_BREAKER_ERROR_RATE", "1.5", "a number > 0 and <= 1"),
    ("CRONBUS_BREAKER_MIN_CALLS", "0", "a whole number 1..100000"),
    ("CRONBUS_BREAKER_WINDOW_S", "0", "error rate is taken over, > 0"),
])
def test_a_wrong_setting_names_the_variable_and_the_expected_form(monkeypatch, name, value, expected):
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert message.startswith(f"{name}=")
    assert expected in message


def test_a_missing_setting_a_role_needs_is_named():
    with pytest.raises(SettingsError, match="CRONBUS_API_URL is missing: expected the downstream"):
        load_settings().require("api_url")


def test_bridge_patterns_are_a_comma_list_and_the_bridge_uses_redis_url_by_default(monkeypatch):
    monkeypatch.setenv("CRONBUS_REDIS_URL", "redis://:pw@r1:6379/0")
    settings = load_settings()
    assert settings.bridge_patterns == ["campaign.*.worldTimeAdvanced", "campaign.*.entityModified"]
    assert settings.bridge_redis == "redis://:pw@r1:6379/0"
    monkeypatch.setenv("CRONBUS_BRIDGE_PATTERNS", "campaign.*.a, campaign.*.b,")
    monkeypatch.setenv("CRONBUS_BRIDGE_REDIS_URL", "rediss://r2:6380/0")
    settings = load_settings()
    assert settings.bridge_patterns == ["campaign.*.a", "campaign.*.b"]
    assert settings.bridge_redis == "rediss://r2:6380/0"


def test_the_former_name_of_max_retries_is_read_with_a_warning(monkeypatch, caplog):
    monkeypatch.setenv("CRONBUS_MAX_ATTEMPTS", "5")
    monkeypatch.delenv("CRONBUS_MAX_RETRIES", raising=False)
    assert load_settings().max_retries == 5
    assert "CRONBUS_MAX_ATTEMPTS is deprecated: it is CRONBUS_MAX_RETRIES now" in caplog.text
    monkeypatch.setenv("CRONBUS_MAX_RETRIES", "2")  # the new name wins
    assert load_settings().max_retries == 2


def test_each_downstream_service_has_its_nested_settings(monkeypatch):
    monkeypatch.setenv("CRONBUS_API_URL", "http://api.local/graphql")
    monkeypatch.setenv("CRONBUS_SERVICES__WORLD__URL", "http://world.local/graphql")
    monkeypatch.setenv("CRONBUS_SERVICES__WORLD__TIMEOUT_S", "3")
    settings = load_settings()
    assert settings.service("world").url == "http://world.local/graphql"
    assert settings.service("world").timeout_s == 3
    assert settings.service("api").url == "http://api.local/graphql"  # CRONBUS_API_URL
    with pytest.raises(SettingsError, match=r"service 'billing' has no settings: set "
                                            r"CRONBUS_SERVICES__BILLING__URL"):
        settings.service("billing")


def test_a_bad_part_of_a_service_is_named_by_its_variable(monkeypatch):
    monkeypatch.setenv("CRONBUS_SERVICES__WORLD__URL", "nope")
    monkeypatch.setenv("CRONBUS_SERVICES__WORLD__TOKEN", "s3cret")
    monkeypatch.setenv("CRONBUS_SERVICES__WORLD__TIMEOUT_S", "-1")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert "CRONBUS_SERVICES__WORLD__URL='nope' is invalid" in str(caught.value)
    assert "CRONBUS_SERVICES__WORLD__TIMEOUT_S='-1' is invalid" in str(caught.value)
    assert "s3cret" not in str(caught.value)


def test_the_breaker_opens_at_half_the_calls_of_30_s_by_default(monkeypatch):
    monkeypatch.setenv("CRONBUS_API_URL", "http://api.local/graphql")
    monkeypatch.setenv("CRONBUS_SERVICES__WORLD__URL", "http://world.local/graphql")
    settings = load_settings()
    for name in ("api", "world"):
        service = settings.service(name)
        assert (service.breaker_error_rate, service.breaker_min_calls,
                service.breaker_window_s, service.breaker_reset_timeout_s) == (0.5, 10, 30.0, 30.0)


def test_the_top_level_breaker_rate_settings_are_the_api_service_s(monkeypatch):
    monkeypatch.setenv("CRONBUS_API_URL", "http://api.local/graphql")
    monkeypatch.setenv("CRONBUS_BREAKER_ERROR_RATE", "0.25")
    monkeypatch.setenv("CRONBUS_BREAKER_MIN_CALLS", "20")
    monkeypatch.setenv("CRONBUS_BREAKER_WINDOW_S", "120")
    monkeypatch.setenv("CRONBUS_SERVICES__WORLD__URL", "http://world.local/graphql")
    monkeypatch.setenv("CRONBUS_SERVICES__WORLD__BREAKER_ERROR_RATE", "1")
    monkeypatch.setenv("CRONBUS_SERVICES__WORLD__BREAKER_MIN_CALLS", "3")
    monkeypatch.setenv("CRONBUS_SERVICES__WORLD__BREAKER_WINDOW_S", "5.5")
    settings = load_settings()
    api, world = settings.service("api"), settings.service("world")
    assert (api.breaker_error_rate, api.breaker_min_calls, api.breaker_window_s) == (0.25, 20, 120)
    assert (world.breaker_error_rate, world.breaker_min_calls, world.breaker_window_s) == (1, 3, 5.5)


@pytest.mark.parametrize("part, value, expected", [
    ("BREAKER_ERROR_RATE", "0", "> 0 and <= 1"),
    ("BREAKER_ERROR_RATE", "1.01", "> 0 and <= 1"),
    ("BREAKER_MIN_CALLS", "0", "1..100000"),
    ("BREAKER_MIN_CALLS", "ten", "1..100000"),
    ("BREAKER_WINDOW_S", "-5", "> 0 and <= 3600"),
])
def test_a_bad_breaker_rate_setting_of_a_service_is_named_by_its_variable(monkeypatch, part,
                                                                          value, expected):
    monkeypatch.setenv("CRONBUS_SERVICES__WORLD__URL", "http://world.local/graphql")
    monkeypatch.setenv(f"CRONBUS_SERVICES__WORLD__{part}", value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert message.startswith(f"CRONBUS_SERVICES__WORLD__{part}={value!r} is invalid")
    assert expected in message


def test_every_unknown_cronbus_variable_is_named_with_the_closest_setting(monkeypatch):
    monkeypatch.setenv("CRONBUS_PARTITION", "4")
    monkeypatch.setenv("CRONBUS_ZZZ", "1")
    monkeypatch.setenv("CRONBUS_MAX_RETRIES", "many")
    with pytest.raises(SettingsError) as raised:
        load_settings()
    said = str(raised.value)
    assert "CRONBUS_PARTITION is no cronbus setting (did you mean CRONBUS_PARTITIONS?)" in said
    assert "CRONBUS_ZZZ is no cronbus setting (the README lists every setting)" in said
    assert "CRONBUS_MAX_RETRIES='many' is invalid" in said  # with the rest, at once


def test_the_command_lines_own_and_services_variables_are_known(monkeypatch):
    monkeypatch.setenv("CRONBUS_SCHEDULES_TOKEN", "t")
    monkeypatch.setenv("CRONBUS_SCHEDULES_URL", "http://x")
    monkeypatch.setenv("CRONBUS_SERVICES__WORLD__URL", "http://world/graphql")
    assert load_settings().service("world").url == "http://world/graphql"
