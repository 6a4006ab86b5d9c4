"""The backup and restore of docs/deploy.md ("Backups"), tried: a database in use (accounts, a
room, an audit log that was purged once, so its chain starts at a signed anchor) is dumped with
``pg_dump``, restored into an empty database with ``pg_restore``, and the restored one has every
migration, the same rows, and an audit chain that ``audit_verify`` finds intact."""

from __future__ import annotations

import shutil

import pytest
from django.conf import settings

from tests.procs import free_port, production_env
from tests.procs import run as run_command
from tests.wsclient import db_scalar, scratch_database

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

MAKE_DATA = """
from apps.accounts import services as accounts
from apps.core.context import Origin
from apps.rooms import services as rooms
origin = Origin(ip="192.0.2.1", user_agent="backup-test")
for name in ("alice", "bob"):
    user, _ = accounts.user_register(username=name, password="Corr3ct-horse-battery", email=None, origin=origin)
    rooms.room_create(creator=user, name=f"room of {name}", origin=origin)
"""


def manage(env: dict, args: str) -> str:
    result = run_command(f"python manage.py {args}", env=env, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_a_dump_restored_into_an_empty_database_has_everything_and_its_audit_chain_verifies(tmp_path):
    for tool in ("pg_dump", "pg_restore"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} not found: it comes with PostgreSQL's client (postgresql-client)")
    with scratch_database() as source, scratch_database() as target:
        env = production_env(
            database_url=source,
            redis_url=settings.REDIS_URL,  # this run's own (CI's shards have one each)
            broker_url=settings.CELERY_BROKER_URL,
            port=free_port(),
            var_dir=str(tmp_path / "var"),
        )
        manage(env, "migrate --noinput")
        manage(env, "generate_jwt_keys")
        manage(env, f"shell -c '{MAKE_DATA}'")
        before = db_scalar(source, "SELECT now()::text")
        manage(env, f"purge_audit_log --before '{before}'")  # everything so far: an anchor
        manage(env, f"shell -c '{MAKE_DATA.replace('alice', 'carol').replace('bob', 'dave')}'")
        expected = manage(env, "audit_verify").strip()
        assert expected.startswith("audit chain intact:"), expected

        dump = tmp_path / "synctv.pgc"
        done = run_command(f"pg_dump --format=custom --no-owner --file={dump} '{source}'", env=env)
        assert done.returncode == 0, done.stderr
        done = run_command(f"pg_restore --no-owner --exit-on-error --dbname='{target}' {dump}", env=env)
        assert done.returncode == 0, done.stderr

        restored = {**env, "DATABASE_URL": target}
        manage(restored, "migrate --check")  # every migration is there, nothing left to apply
        assert manage(restored, "audit_verify").strip() == expected
        for table in (
            "accounts_user",
            "rooms_room",
            "audit_auditevent",
            "audit_auditanchor",
            "accounts_signingkey",
        ):
            count = f"SELECT count(*) FROM {table}"
            assert db_scalar(target, count) == db_scalar(source, count), table
        assert db_scalar(target, "SELECT count(*) FROM accounts_user") == 4
        assert db_scalar(target, "SELECT count(*) FROM audit_auditanchor") == 1
