"""The OpenAPI schema at /api/schema/ describes what the server answers.

Every operation in the schema is called for real (in-process, on the rooms tests' world: one
room with a two-movie playlist and every kind of caller) by an anonymous caller, a site-banned
account, a registered outsider, a guest of the room, a plain member and the creator, with a
valid body and a broken one. Each answer's status must be documented for that operation, and
its body must match the schema documented for that status: objects may not carry undocumented
fields, ``null`` only where the schema says ``nullable``. Scenario tests cover answers the walk
does not reach on its own: no movie playing (``null``), a batch of movies, a stale playback
version (409), a pending join (202), too many requests (429), a body that is too large (413) or
not JSON (415).

OpenAPI 3.0 schemas are turned into JSON Schema (``nullable`` becomes a ``null`` type,
``$ref``s point into one document) and checked with ``jsonschema``.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import jsonschema
import pytest
from django.conf import settings
from django.test import override_settings
from drf_spectacular.generators import SchemaGenerator

from apps.accounts.tests.factories import PASSWORD
from apps.rooms.tests import conftest as rooms_conftest

# The rooms tests' world (apps/rooms/tests/conftest.py), built once for the module.
module_room_world = rooms_conftest.module_room_world
shared_room_world = rooms_conftest.shared_room_world

HTTP_METHODS = ("get", "post", "put", "patch", "delete")
ACTORS = ("anon", "banned", "outsider", "guest", "member", "creator")


def _schema() -> dict:
    return SchemaGenerator().get_schema(request=None, public=True)


# Collected once: the operations to walk (the same generator /api/schema/ serves).
SCHEMA = json.loads(json.dumps(_schema(), default=str))
OPERATIONS = sorted(
    (path, method) for path, item in SCHEMA["paths"].items() for method in item if method in HTTP_METHODS
)


# --- OpenAPI 3.0 -> JSON Schema -----------------------------------------------------------------


def _convert(node: Any) -> Any:
    if isinstance(node, list):
        return [_convert(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _convert(value) for key, value in node.items()}
    if "$ref" in node:
        node["$ref"] = node["$ref"].replace("#/components/schemas/", "#/definitions/")
    if node.get("type") == "object" and "properties" in node and "additionalProperties" not in node:
        node["additionalProperties"] = False  # an undocumented field is a difference too
    if node.pop("nullable", False):
        if "type" in node and "enum" not in node:
            node["type"] = [node["type"], "null"]
        else:
            node = {"anyOf": [node, {"type": "null"}]}
    return node


DEFINITIONS = _convert(SCHEMA.get("components", {}).get("schemas", {}))


def validate(body: Any, schema: dict, where: str) -> None:
    document = {**_convert(copy.deepcopy(schema)), "definitions": DEFINITIONS}
    try:
        jsonschema.validate(body, document, cls=jsonschema.Draft7Validator)
    except jsonschema.ValidationError as exc:
        pytest.fail(f"{where}: the body does not match the documented schema: {exc.message}\n{body!r}"[:3000])


def check(response, path: str, method: str, where: str) -> None:
    """The status is documented for the operation and the body matches its schema."""
    operation = SCHEMA["paths"][path][method]
    status = str(response.status_code)
    documented = operation["responses"]
    assert status in documented or "default" in documented, (
        f"{where}: answered {status}, documented {sorted(documented)}: {response.content[:300]!r}"
    )
    answer = documented.get(status, documented.get("default"))
    content = (answer.get("content") or {}).get("application/json")
    if response.status_code == 204 or not response.content:
        assert content is None, f"{where}: documented a JSON body for {status}, answered none"
        return
    assert content is not None, (
        f"{where}: {status} is documented without a body, answered {response.content[:300]!r}"
    )
    validate(json.loads(response.content), content["schema"], f"{where} {status}")


# --- calling operations -----------------------------------------------------------------------------


def _stream_id(world) -> str:
    """A live stream of the world's room, made in the test's transaction (rolled back with it)."""
    from apps.accounts.tests.factories import TEST_ORIGIN
    from apps.streaming.services import stream_create

    actor = world.actor_of("creator")
    return stream_create(actor=actor, room=world.room, name="Live", origin=TEST_ORIGIN).stream.pk


def _url(world, path: str) -> str:
    values = {
        "room_id": world.room.pk,
        "user_id": world.target.id,
        "movie_id": world.movies[0].pk,
        "provider": "github",  # no provider is configured here: the OAuth endpoints answer 404
    }
    if "{stream_id}" in path:
        values["stream_id"] = _stream_id(world)

    def fill(match: re.Match) -> str:
        name = match.group(1)
        if name not in values:
            pytest.fail(f"{path}: no value for the path parameter {{{name}}}: add one to _url()")
        return str(values[name])

    return re.sub(r"\{(\w+)\}", fill, path)


def _valid_body(world, path: str, method: str, actor) -> Any:
    """A body the operation accepts (for a caller allowed to call it); None: no body."""
    movies = [m.pk for m in world.movies]
    bodies = {
        ("/api/v1/auth/register", "post"): {"username": "newcomer", "password": PASSWORD},
        ("/api/v1/auth/login", "post"): {
            "username": actor.user.username if actor.user else "nobody",
            "password": PASSWORD,
        },
        ("/api/v1/auth/refresh", "post"): {"refresh": "not-a-token"},
        ("/api/v1/auth/logout", "post"): {"refresh": "not-a-token"},
        ("/api/v1/auth/logout-all", "post"): {},
        ("/api/v1/auth/password/change", "post"): {
            "old_password": PASSWORD,
            "new_password": "N3w-horse-battery",
        },
        ("/api/v1/users/me", "patch"): {"email": "changed@example.com"},
        ("/api/v1/auth/oauth/{provider}/callback", "post"): {"code": "a-code", "state": "a-state"},
        ("/api/v1/rooms", "post"): {"name": "Another room"},
        ("/api/v1/rooms/{room_id}", "patch"): {"description": "Changed"},
        ("/api/v1/rooms/{room_id}/join", "post"): {},
        ("/api/v1/rooms/{room_id}/guest", "post"): {"name": "Visitor"},
        ("/api/v1/rooms/{room_id}/invites", "post"): {"max_uses": 3},
        ("/api/v1/rooms/{room_id}/members/{user_id}", "patch"): {"permissions_added": 64},
        ("/api/v1/rooms/{room_id}/members/{user_id}/ban", "post"): {"reason": "spam"},
        ("/api/v1/rooms/{room_id}/movies", "post"): {
            "name": "Third",
            "url": "https://media.example.com/third.mp4",
        },
        ("/api/v1/rooms/{room_id}/movies/reorder", "post"): {"order": movies[::-1]},
        ("/api/v1/rooms/{room_id}/movies/{movie_id}", "patch"): {"name": "Renamed"},
        ("/api/v1/rooms/{room_id}/playback", "put"): {"playing": True},
        ("/api/v1/rooms/{room_id}/streams", "post"): {"name": "Live"},
    }
    if (path, method) in bodies:
        return bodies[(path, method)]
    return {} if method in ("post", "put", "patch") else None


def call(client, method: str, url: str, body: Any = None, *, raw: bytes | None = None, **extra):
    if raw is not None:
        return client.generic(method.upper(), url, raw, content_type="application/json", **extra)
    if body is None:
        return client.generic(method.upper(), url, **extra)
    return client.generic(method.upper(), url, json.dumps(body), content_type="application/json", **extra)


@pytest.mark.parametrize("actor_name", ACTORS)
@pytest.mark.parametrize(("path", "method"), OPERATIONS, ids=[f"{m.upper()} {p}" for p, m in OPERATIONS])
def test_every_operation_answers_as_documented(path, method, actor_name, shared_room_world):
    world = shared_room_world
    actor = world.actor(actor_name)
    url = _url(world, path)
    where = f"{method.upper()} {path} as {actor_name}"
    response = call(actor.client, method, url, _valid_body(world, path, method, actor))
    check(response, path, method, where)
    if method in ("post", "put", "patch"):
        # Broken bodies: wrong types, and not JSON at all.
        response = call(actor.client, method, url, {"name": 5, "url": [], "order": "x", "refresh": 1})
        check(response, path, method, f"{where} (wrong types)")
        response = call(actor.client, method, url, raw=b"{not json")
        check(response, path, method, f"{where} (malformed JSON)")


# --- scenarios the walk does not reach ---------------------------------------------------------------


def test_current_movie_is_null_when_nothing_plays(shared_room_world):
    world = shared_room_world
    creator = world.creator.client
    assert creator.delete(world.url("movies")).status_code == 204
    response = creator.get(world.url("movies/current"))
    assert response.status_code == 200 and response.content == b"null"
    check(response, "/api/v1/rooms/{room_id}/movies/current", "get", "current movie, none playing")


def test_adding_a_batch_of_movies_is_documented(shared_room_world):
    world = shared_room_world
    body = [
        {"name": "A", "url": "https://media.example.com/a.mp4"},
        {"name": "B", "url": "https://media.example.com/b.mp4"},
    ]
    path = "/api/v1/rooms/{room_id}/movies"
    request_schema = SCHEMA["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
    validate(body, request_schema, "the batch request body")
    response = call(world.creator.client, "post", world.url("movies"), body)
    assert response.status_code == 201, response.content
    check(response, path, "post", "add a batch of movies")


def test_stale_playback_version_is_a_documented_409(shared_room_world):
    world = shared_room_world
    response = call(world.creator.client, "put", world.url("playback"), {"playing": True, "version": 0})
    assert response.status_code == 409, response.content
    check(response, "/api/v1/rooms/{room_id}/playback", "put", "stale playback version")


def test_join_waiting_for_approval_is_a_documented_202(shared_room_world):
    world = shared_room_world
    creator = world.creator.client
    r = call(creator, "patch", world.url(), {"settings": {"join_requires_approval": True}})
    assert r.status_code == 200, r.content
    response = call(world.outsider.client, "post", world.url("join"), {})
    assert response.status_code == 202, response.content
    check(response, "/api/v1/rooms/{room_id}/join", "post", "join with approval")


@pytest.mark.parametrize(("path", "method"), OPERATIONS, ids=[f"{m.upper()} {p}" for p, m in OPERATIONS])
def test_too_many_requests_is_documented(path, method, shared_room_world):
    world = shared_room_world
    url = _url(world, path)
    operation = SCHEMA["paths"][path][method]
    # A limit of none: the first request counted is over (and changes nothing).
    with override_settings(RATELIMITS={**settings.RATELIMITS, "api": "0/m"}):
        response = call(world.member.client, method, url, None)
    if response.status_code != 429:
        # Not counted against the API limit (the JWKS are public, cached keys).
        assert "429" not in operation["responses"], f"{method.upper()} {path} documents a 429 it never sends"
        return
    check(response, path, method, f"{method.upper()} {path}, over the limit")
    assert response["Retry-After"]


def test_too_large_and_non_json_bodies_are_documented(shared_room_world):
    world = shared_room_world
    path = "/api/v1/rooms/{room_id}/movies"
    big = b'{"name": "' + b"x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 10) + b'"}'
    response = call(world.creator.client, "post", world.url("movies"), raw=big)
    assert response.status_code == 413, response.status_code
    check(response, path, "post", "a body over the upload limit")
    response = world.creator.client.generic("POST", world.url("movies"), b"name=x", content_type="text/plain")
    assert response.status_code == 415, response.status_code
    check(response, path, "post", "a body that is not JSON")


def test_every_error_answer_uses_the_error_schema():
    for path, method in OPERATIONS:
        for status, answer in SCHEMA["paths"][path][method]["responses"].items():
            if int(status) < 400:
                continue
            schema = (answer.get("content") or {}).get("application/json", {}).get("schema")
            assert schema == {"$ref": "#/components/schemas/Error"}, (path, method, status, answer)
    error = SCHEMA["components"]["schemas"]["Error"]
    assert error["required"] == ["error"]
