"""Request ids and log lines (apps/core/requestlog.py; docs/operations.md, "Logs"): every
response carries ``X-Request-ID``, a front's id is kept only behind a trusted proxy, one line per
request without the query string, and the JSON format production uses."""

from __future__ import annotations

import copy
import io
import json
import logging
import logging.config
import re

import pytest
from django.conf import settings
from django.test import Client, override_settings

from apps.accounts.tests.factories import make_user
from apps.core import requestlog

pytestmark = pytest.mark.django_db

HEX_ID = re.compile(r"[0-9a-f]{32}")


def test_every_answer_carries_a_new_request_id():
    client = Client(raise_request_exception=False)
    answers = [
        client.get("/healthz"),
        client.get("/api/v1/users/me"),  # 401
        client.get("/no-such-page/"),  # 404
        client.post("/api/v1/auth/login", "{not json", content_type="application/json"),  # 400
        client.get("/"),
    ]
    ids = [a["X-Request-ID"] for a in answers]
    assert all(HEX_ID.fullmatch(i) for i in ids), ids
    assert len(set(ids)) == len(ids)
    assert [a.status_code for a in answers][:4] == [200, 401, 404, 400]


@pytest.mark.parametrize(
    ("hops", "given", "kept"),
    [
        (0, "front-1234abcd", False),  # no trusted proxy: any client could write it
        (1, "front-1234abcd", True),
        (1, "0123456789abcdef0123456789abcdef", True),
        (1, "short", False),
        (1, "spaces are not ids", False),
        (1, "x" * 129, False),
        (1, "bad\r\nheader-injection", False),
    ],
)
def test_a_fronts_id_is_kept_only_behind_a_trusted_proxy_and_only_if_it_is_an_id(hops, given, kept):
    with override_settings(TRUSTED_PROXY_COUNT=hops):
        answer = Client().get("/healthz", HTTP_X_REQUEST_ID=given)
    assert (answer["X-Request-ID"] == given) is kept
    if not kept:
        assert HEX_ID.fullmatch(answer["X-Request-ID"])


def test_one_line_per_request_with_its_id_and_user_and_never_the_query_string(caplog):
    user, pair = make_user()
    access = pair.access
    with caplog.at_level(logging.INFO, logger="synctv.request"):
        answer = Client().get("/api/v1/users/me?token=sekrit-value", HTTP_AUTHORIZATION=f"Bearer {access}")
    assert answer.status_code == 200
    [line] = [r for r in caplog.records if r.name == "synctv.request"]
    assert line.getMessage().startswith("GET /api/v1/users/me 200 ")
    assert (line.method, line.path, line.status) == ("GET", "/api/v1/users/me", 200)
    assert line.duration_ms >= 0
    assert line.request_id == answer["X-Request-ID"]
    assert line.user_id == str(user.pk)
    assert "sekrit" not in line.getMessage() and "sekrit" not in json.dumps(vars(line), default=str)


def json_lines(emit) -> list[dict]:
    """Run ``emit()`` with the root logger writing through settings.LOGGING's console handler in
    the JSON format production uses; the lines it wrote, parsed."""
    config = copy.deepcopy(settings.LOGGING)
    config["handlers"]["console"]["formatter"] = "json"
    stream = io.StringIO()
    config["handlers"]["console"]["stream"] = stream
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    logging.config.dictConfig(config)
    try:
        emit()
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
        logging.config.dictConfig(settings.LOGGING)
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_carry_the_context_and_what_extra_added():
    user, pair = make_user()
    access = pair.access
    answers = []

    def emit():
        answers.append(Client().get("/api/v1/users/me", HTTP_AUTHORIZATION=f"Bearer {access}"))
        logging.getLogger("apps.anything").warning("outside a request")

    lines = json_lines(emit)
    request_line = next(line for line in lines if line["logger"] == "synctv.request")
    assert request_line["request_id"] == answers[0]["X-Request-ID"]
    assert request_line["user_id"] == str(user.pk)
    assert request_line["node_id"] == settings.SYNCTV_NODE_ID
    assert (request_line["level"], request_line["status"], request_line["path"]) == (
        "INFO",
        200,
        "/api/v1/users/me",
    )
    assert re.match(r"\d{4}-\d\d-\d\dT", request_line["time"])
    outside = next(line for line in lines if line["logger"] == "apps.anything")
    assert outside["message"] == "outside a request"
    assert (outside["request_id"], outside["user_id"]) == ("-", "-")


def test_djangos_own_line_for_a_refused_request_carries_its_id():
    """``django.request`` logs a 4xx after the middleware returned: the id still reaches it."""
    answers = []

    def emit():
        answers.append(Client(raise_request_exception=False).get("/api/v1/users/me"))

    [refused] = [line for line in json_lines(emit) if line["logger"] == "django.request"]
    assert refused["message"] == "Unauthorized: /api/v1/users/me"
    assert refused["request_id"] == answers[0]["X-Request-ID"]


def test_json_lines_never_carry_a_query_string_secret():
    """``django.request`` passes the request object along; its text holds the whole URL."""

    def emit():
        Client(raise_request_exception=False).get("/api/v1/users/me?key=sekrit-reset-key&token=sekrit-token")
        logging.getLogger("apps.anything").warning(
            "see %s", "/x?code=sekrit-code", extra={"url": "/y?invite=sekrit-inv"}
        )

    lines = json_lines(emit)
    assert any(line["logger"] == "django.request" for line in lines)
    text = json.dumps(lines)
    assert "sekrit" not in text, text
    assert "[redacted]" in text


def test_the_context_is_gone_once_the_request_ended():
    Client().get("/healthz")
    assert requestlog.request_id.get() == "-" and requestlog.user_id.get() == "-"
