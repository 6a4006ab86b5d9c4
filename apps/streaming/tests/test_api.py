"""The streams API (docs/api.md, "Live streams"): create, status, rotate the key, delete; who may."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.db import connection

from apps.audit.models import AuditEvent
from apps.core.tests.helpers import assert_error
from apps.rooms.models import Movie, PlaybackState
from apps.rooms.tests.conftest import db_state
from apps.streaming import keys
from apps.streaming.models import Stream
from apps.streaming.tests.streams_helpers import (
    create,
    publish,
    streams_url,
)


def test_create_answers_the_key_once_and_adds_a_live_movie(world):
    made = create(world, name="Friday live")
    assert keys.looks_like_key(made.key) and made.key.startswith("sk_")
    assert made.publish_url == f"{settings.RTMP_URL}/{made.key}"
    movie = Movie.objects.get(pk=made.movie_id)
    assert movie.room_id == world.room.pk and movie.type == "live" and movie.name == "Friday live"
    assert movie.url.endswith(f"/streams/{made.id}/") and made.key not in movie.url
    stream = made.stream
    assert stream.owner_id == world.member.user.pk and not stream.live and stream.source_url == ""
    playlist = world.member.client.get(world.url("movies")).json()["results"]
    assert playlist[-1]["id"] == made.movie_id and made.key not in str(playlist)
    actions = list(AuditEvent.objects.filter(room_id=world.room.pk).values_list("action", flat=True))
    assert "stream.create" in actions and "playlist.add" in actions


def test_the_key_is_stored_only_as_its_keyed_hash(world):
    made = create(world)
    stream = made.stream
    assert stream.key_hash == keys.key_hash(made.key) and len(stream.key_hash) == 64
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM streaming_stream")
        rows = cursor.fetchall()
    raw = repr(rows)
    assert made.key not in raw and made.key[3:] not in raw  # not the key, not its random part
    assert keys.key_hash(made.key) != keys.key_hash(create(world).key)
    assert not AuditEvent.objects.filter(details__icontains=made.key[3:]).exists()


def test_status_for_members_and_guests(world):
    made = create(world)
    for name in ("member", "guest", "creator", "site_admin"):
        response = world.client(name).get(streams_url(world, made.id))
        assert response.status_code == 200, (name, response.content)
        body = response.json()
        assert set(body) == {"id", "live", "publisher_node", "playback_url", "ingest_running"}
        assert body["id"] == made.id and body["live"] is False and body["publisher_node"] == ""
        assert isinstance(body["ingest_running"], bool)
        assert f"/{made.id}/" in body["playback_url"] and made.key not in body["playback_url"]


@pytest.mark.parametrize(
    ("name", "status", "code"),
    [
        ("anon", 401, "not_authenticated"),
        ("outsider", 403, "not_in_room"),
        ("foreign_guest", 403, "not_in_room"),
        ("pending", 403, "not_in_room"),
        ("room_banned", 403, "not_in_room"),
        ("banned", 403, "user_banned"),
    ],
)
def test_outsiders_get_nothing(world, name, status, code):
    made = create(world)
    before = db_state()
    client = world.client(name)
    assert_error(client.get(streams_url(world, made.id)), status, code)
    assert_error(client.post(streams_url(world), {"name": "Mine"}, format="json"), status, code)
    assert_error(client.post(streams_url(world, f"{made.id}/rotate-key")), status, code)
    assert_error(client.delete(streams_url(world, made.id)), status, code)
    assert db_state() == before


@pytest.mark.parametrize("name", ["guest", "member_minus"])
def test_without_add_movie_no_stream_is_created(world, name):
    before = db_state()
    response = world.client(name).post(streams_url(world), {"name": "Mine"}, format="json")
    assert_error(response, 403, "permission_denied")
    assert db_state() == before and not Stream.objects.exists()


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"name": ""},
        {"name": 5},
        {"name": "x" * 201},
        {"name": "Live", "source_url": 7},
        {"name": "Live", "source_url": "ftp://203.0.113.9/x"},
        {"name": "Live", "source_url": "javascript:alert(1)"},
        {"name": "Live", "source_url": "rtmp://127.0.0.1/live/x"},  # the server will not pull loopback
        {"name": "Live", "source_url": "rtmp://169.254.169.254/live"},
        {"name": "Live", "source_url": "http://10.0.0.5/index.m3u8"},
        {"name": "Live", "source_url": "rtmp:///nohost"},
        {"name": "Live", "source_url": "rtmp://host:99999/x"},
        {"name": "Live", "source_url": "rtmp://a b/x"},
        {"name": "Live", "extra": 1},
        ["Live"],
    ],
)
def test_bad_bodies_are_400_and_change_nothing(world, body):
    before = db_state()
    response = world.member.client.post(streams_url(world), body, format="json")
    assert_error(response, 400)
    assert db_state() == before


def test_malformed_json_is_400(world):
    response = world.member.client.generic(
        "POST", streams_url(world), b"{not json", content_type="application/json"
    )
    assert_error(response, 400)


@pytest.mark.parametrize(
    "source",
    ["rtmp://8.8.8.8/live/cam", "rtmps://8.8.4.4:4443/live/cam", "https://[2001:4860:4860::8888]/a.m3u8"],
)
def test_a_pulled_source_on_a_public_address_is_kept(world, source, settings):
    settings.FETCH_ALLOW_PRIVATE_NETWORKS = False
    made = create(world, source_url=source)
    assert made.stream.source_url == source


def test_rotation_by_owner_and_admins_only(world):
    made = create(world)  # owned by "member"
    for name in ("member_plus", "target", "guest"):
        client = world.client(name) if name != "target" else world.target.client
        assert_error(client.post(streams_url(world, f"{made.id}/rotate-key")), 403, "permission_denied")
    keys_seen = {made.key}
    for name in ("member", "admin", "creator", "site_admin"):
        response = world.client(name).post(streams_url(world, f"{made.id}/rotate-key"))
        assert response.status_code == 200, (name, response.content)
        body = response.json()
        assert set(body) == {"stream_key", "publish_url"} and body["stream_key"] not in keys_seen
        assert body["publish_url"] == f"{settings.RTMP_URL}/{body['stream_key']}"
        keys_seen.add(body["stream_key"])
        assert Stream.objects.get(pk=made.id).key_hash == keys.key_hash(body["stream_key"])
    assert AuditEvent.objects.filter(action="stream.key_rotate").count() == 4


def test_rotation_stops_the_old_key_and_ends_a_live_publisher(world):
    made = create(world)
    assert publish(made.key).status_code == 302
    response = world.member.client.post(streams_url(world, f"{made.id}/rotate-key"))
    assert response.status_code == 200
    stream = made.stream
    assert not stream.live and stream.publisher_node == "" and stream.live_since is None
    assert publish(made.key).status_code == 403
    assert publish(response.json()["stream_key"], clientid="8").status_code == 302


def test_delete_by_owner_takes_the_movie_out(world):
    made = create(world)
    creator = world.creator.client
    response = creator.put(world.url("playback"), {"movie_id": made.movie_id, "playing": True}, format="json")
    assert response.status_code == 200, response.content
    assert publish(made.key).status_code == 302
    assert world.member.client.delete(streams_url(world, made.id)).status_code == 204
    assert (
        not Stream.objects.filter(pk=made.id).exists() and not Movie.objects.filter(pk=made.movie_id).exists()
    )
    assert PlaybackState.objects.get(room=world.room).movie_id is None
    assert publish(made.key).status_code == 403
    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {"stream.delete", "playlist.delete"} <= actions
    assert_error(world.member.client.get(streams_url(world, made.id)), 404, "not_found")


@pytest.mark.parametrize(("name", "allowed"), [("admin", True), ("creator", True), ("member_plus", False)])
def test_delete_by_others(world, name, allowed):
    made = create(world)
    response = world.client(name).delete(streams_url(world, made.id))
    if allowed:
        assert response.status_code == 204
    else:
        assert_error(response, 403, "permission_denied")
        assert Stream.objects.filter(pk=made.id).exists()


def test_taking_the_movie_out_of_the_playlist_ends_the_stream(world):
    made = create(world)
    assert world.member.client.delete(world.url(f"movies/{made.movie_id}")).status_code == 204
    assert not Stream.objects.filter(pk=made.id).exists()
    assert publish(made.key).status_code == 403


@pytest.mark.parametrize("stream_id", ["nope", "x" * 33, "a%00b"])
def test_unknown_streams_are_404(world, stream_id):
    for method in ("get", "delete"):
        assert_error(getattr(world.member.client, method)(streams_url(world, stream_id)), 404, "not_found")
    assert_error(world.member.client.post(streams_url(world, f"{stream_id}/rotate-key")), 404, "not_found")


def test_a_stream_of_another_room_is_404_here(world):
    other = create(world)
    Stream.objects.filter(pk=other.id).update(room=world.other_room)
    assert_error(world.creator.client.get(streams_url(world, other.id)), 404, "not_found")
    assert_error(world.creator.client.delete(streams_url(world, other.id)), 404, "not_found")
