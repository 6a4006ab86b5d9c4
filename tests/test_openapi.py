"""The OpenAPI schema at /api/schema/ lists the accounts endpoints (docs/api.md, "REST") and is
valid OpenAPI 3 with no generator warnings; the docs page renders."""

from __future__ import annotations

import io
import json
from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest
import yaml
from django.conf import settings
from django.contrib.staticfiles import finders
from django.core.management import call_command
from django.test import Client

from apps.rooms.messages import RATE_MAX, RATE_MIN, PlaybackChange

pytestmark = pytest.mark.django_db

# The accounts endpoints this code base implements so far, with their methods.
ACCOUNTS = {
    "/api/v1/auth/register": {"post"},
    "/api/v1/auth/login": {"post"},
    "/api/v1/auth/refresh": {"post"},
    "/api/v1/auth/logout": {"post"},
    "/api/v1/auth/logout-all": {"post"},
    "/api/v1/auth/jwks": {"get"},
    "/api/v1/auth/password/change": {"post"},
    "/api/v1/auth/email/verify": {"post"},
    "/api/v1/auth/email/resend": {"post"},
    "/api/v1/auth/password/reset": {"post"},
    "/api/v1/auth/password/reset/confirm": {"post"},
    "/api/v1/users/me": {"get", "patch"},
}
HTTP_METHODS = {"get", "post", "put", "patch", "delete", "head", "options", "trace"}
PUBLIC = {
    "/api/v1/auth/register",
    "/api/v1/auth/login",
    "/api/v1/auth/refresh",
    "/api/v1/auth/jwks",
    "/api/v1/auth/email/verify",
    "/api/v1/auth/password/reset",
    "/api/v1/auth/password/reset/confirm",
}


@pytest.fixture(scope="module")
def schema_cache():
    return {}


@pytest.fixture
def schema(schema_cache) -> dict:
    if "schema" not in schema_cache:
        r = Client().get("/api/schema/", {"format": "json"})
        assert r.status_code == 200, r.content[:500]
        schema_cache["schema"] = json.loads(r.content)
    return schema_cache["schema"]


def test_schema_endpoint_renders_openapi_3():
    r = Client().get("/api/schema/")
    assert r.status_code == 200
    document = yaml.safe_load(r.content)
    assert str(document["openapi"]).startswith("3.")
    assert document["info"]["title"] == "SyncTV API"


def test_schema_lists_every_accounts_path_with_its_methods(schema):
    paths = schema["paths"]
    for path, methods in ACCOUNTS.items():
        assert path in paths, f"{path} missing from the schema"
        assert methods <= set(paths[path]) & HTTP_METHODS, (path, set(paths[path]))


def test_request_bodies_name_the_fields_of_api_md(schema):
    def fields(path: str, method: str = "post") -> tuple[set[str], set[str]]:
        body = schema["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]
        ref = body["$ref"].rsplit("/", 1)[-1]
        component = schema["components"]["schemas"][ref]
        return set(component["properties"]), set(component.get("required", []))

    assert fields("/api/v1/auth/register") == ({"username", "password", "email"}, {"username", "password"})
    assert fields("/api/v1/auth/login") == ({"username", "password"}, {"username", "password"})
    assert fields("/api/v1/auth/refresh") == ({"refresh"}, {"refresh"})
    assert fields("/api/v1/auth/logout") == ({"refresh"}, {"refresh"})
    assert fields("/api/v1/auth/password/change") == (
        {"old_password", "new_password"},
        {"old_password", "new_password"},
    )
    properties, required = fields("/api/v1/users/me", "patch")
    assert {"username", "email"} <= properties and not required


def test_playback_body_is_the_sockets_playback_change(schema):
    """PUT rooms/{id}/playback documents the one definition both transports parse."""
    body = schema["paths"]["/api/v1/rooms/{room_id}/playback"]["put"]["requestBody"]["content"]
    component = schema["components"]["schemas"][body["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]]
    properties = component["properties"]
    assert (
        set(properties)
        == set(PlaybackChange.model_fields)
        == {"movie_id", "playing", "position", "rate", "version"}
    )
    assert not component.get("required") and component["additionalProperties"] is False
    assert (properties["rate"]["minimum"], properties["rate"]["maximum"]) == (RATE_MIN, RATE_MAX)
    assert properties["movie_id"] == {
        **properties["movie_id"],
        "type": "string",
        "nullable": True,
        "maxLength": 32,
    }
    assert properties["version"]["type"] == "integer" and properties["playing"]["type"] == "boolean"


def test_user_shape(schema):
    ref = schema["paths"]["/api/v1/users/me"]["get"]["responses"]["200"]["content"]["application/json"][
        "schema"
    ]
    component = schema["components"]["schemas"][ref["$ref"].rsplit("/", 1)[-1]]
    shown = {"id", "username", "email", "email_verified", "role", "date_joined"}
    assert set(component["properties"]) == shown


def test_protected_endpoints_declare_bearer_auth(schema):
    schemes = schema["components"]["securitySchemes"]
    bearer = [name for name, s in schemes.items() if s.get("type") == "http" and s.get("scheme") == "bearer"]
    assert bearer
    for path, methods in ACCOUNTS.items():
        if path in PUBLIC:
            continue
        for method in methods:
            security = schema["paths"][path][method].get("security", schema.get("security", []))
            assert any(set(entry) & set(bearer) for entry in security), (path, method, security)


def test_docs_page_renders():
    r = Client().get("/api/docs/")
    assert r.status_code == 200
    assert b"swagger" in r.content.lower()


def test_spectacular_validate_fail_on_warn(tmp_path):
    """`manage.py spectacular --validate --fail-on-warn` passes: valid OpenAPI, no warnings."""
    out = tmp_path / "schema.yaml"
    stderr = io.StringIO()
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out), stderr=stderr)
    assert "Warning" not in stderr.getvalue() and "Error" not in stderr.getvalue(), stderr.getvalue()
    document = yaml.safe_load(out.read_text())
    assert set(ACCOUNTS) <= set(document["paths"])


class _Assets(HTMLParser):
    """Every src/href of a page, and whether it has inline script or style."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for name in ("src", "href"):
            if attrs.get(name):
                self.urls.append(attrs[name])
        if tag == "style" or "style" in attrs or any(name.startswith("on") for name in attrs):
            self.inline.append(tag)
        self._in_script = tag == "script" and not attrs.get("src")

    def handle_data(self, data):
        if self._in_script and data.strip():
            self.inline.append("script")

    def handle_endtag(self, tag):
        self._in_script = False


def test_docs_page_loads_only_this_sites_files_under_the_strict_csp():
    """Swagger UI comes from the project (drf-spectacular-sidecar), not a CDN: the page that
    runs next to the tokens in localStorage references no other host, has no inline script or
    style, and so carries the same Content-Security-Policy as every page."""
    r = Client().get("/api/docs/")
    assert r.status_code == 200
    page = _Assets()
    page.feed(r.content.decode())
    assert page.urls, r.content.decode()
    for url in page.urls:
        parts = urlsplit(url)
        assert not parts.scheme and not parts.netloc and url.startswith("/"), f"foreign asset {url}"
    assert not page.inline, f"inline {page.inline} in {r.content.decode()}"
    assert "script-src 'self'" in r.headers.get("Content-Security-Policy", ""), dict(r.headers)
    for url in page.urls:
        path = urlsplit(url).path
        if path.startswith(settings.STATIC_URL):
            assert finders.find(path[len(settings.STATIC_URL) :]), f"{path}: collectstatic cannot find it"
        else:
            script = Client().get(url)
            assert script.status_code == 200, url
            assert "SwaggerUIBundle" in script.content.decode()
