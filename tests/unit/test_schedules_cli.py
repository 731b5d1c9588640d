from __future__ import annotations

import json

import pytest

from cronbus.agents.cli.main import (
    EXIT_INVALID,
    EXIT_NOT_FOUND,
    EXIT_UNAUTHORIZED,
    EXIT_UNREACHABLE,
    _schedules_error,
    _schedules_request,
    parser,
)


def request(*argv: str):
    return _schedules_request(parser().parse_args(["schedules", *argv]))


@pytest.mark.parametrize("argv, method, path", [
    (["list"], "GET", "/schedules"),
    (["get", "s1"], "GET", "/schedules/s1"),
    (["delete", "s1"], "DELETE", "/schedules/s1"),
    (["pause", "s1"], "POST", "/schedules/s1/pause"),
    (["resume", "s1"], "POST", "/schedules/s1/resume"),
    (["trigger", "s1"], "POST", "/schedules/s1/trigger"),
    (["next", "s1"], "GET", "/schedules/s1/next"),
    (["runs", "s1"], "GET", "/schedules/s1/runs"),
    (["get", "a/b"], "GET", "/schedules/a%2Fb"),
])
def test_each_command_is_one_api_call(argv, method, path):
    assert request(*argv)[:2] == (method, path)


def test_definitions_come_from_set_pairs_and_files(tmp_path):
    file = tmp_path / "s.json"
    file.write_text(json.dumps({"job_type": "export", "cron": "@daily", "payload": {"a": 1}}))
    method, path, options = request("create", "--file", str(file), "--set", "cron=@hourly",
                                    "--set", "limit=3")
    assert (method, path) == ("POST", "/schedules")
    assert options["json"] == {"job_type": "export", "cron": "@hourly", "payload": {"a": 1},
                               "limit": 3}
    method, path, options = request("update", "s1", "--set", "name=n")
    assert (method, path, options) == ("PUT", "/schedules/s1", {"json": {"name": "n"}})
    assert request("trigger", "s1", "--idempotency-key", "k")[2] == {
        "headers": {"Idempotency-Key": "k"}}
    assert request("next", "s1", "--count", "3")[2] == {"params": {"count": 3}}
    assert request("next", "s1", "--after", "2027-03-27T00:00:00Z")[2] == {
        "params": {"count": 5, "after": "2027-03-27T00:00:00Z"}}


def test_a_file_that_is_not_a_json_object_is_named(tmp_path):
    file = tmp_path / "s.json"
    file.write_text("[1]")
    with pytest.raises(ValueError, match="a JSON object is expected"):
        request("create", "--file", str(file))


def test_errors_have_their_own_exit_codes_and_name_the_fields():
    code, message = _schedules_error(422, {"error": "invalid request", "problems": [
        {"field": "cron", "message": "not a cron pattern"},
        {"field": "timezone", "message": "not an IANA zone"}]})
    assert code == EXIT_INVALID
    assert message.splitlines() == ["invalid request:", "  cron: not a cron pattern",
                                    "  timezone: not an IANA zone"]
    assert _schedules_error(404, {"error": "no schedule 's1'"}) == (EXIT_NOT_FOUND, "no schedule 's1'")
    assert _schedules_error(401, {"error": "token"})[0] == EXIT_UNAUTHORIZED
    assert _schedules_error(403, {"error": "read-only"}) == (EXIT_UNAUTHORIZED, "read-only")
    assert _schedules_error(413, {"error": "too large"}) == (EXIT_INVALID, "too large")
    assert _schedules_error(500, {"error": "boom"}) == (EXIT_UNREACHABLE, "HTTP 500: boom")
