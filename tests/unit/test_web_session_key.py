"""One session key per installation: a cookie survives a new app on the same database; rotation ends it."""

import re

import pytest
from starlette.testclient import TestClient

from scpnode.cli import main
from scpnode.config import Settings
from scpnode.db import ThreadDatabases
from scpnode.schema import prepare
from scpnode.web import create_app
from scpnode.web.security import SESSION_COOKIE
from scpnode.web.security_audit import SESSION_KEY_ROTATED, recent
from scpnode.web.session_key import (
    SessionKeyMissing, ensure_session_key, rotate_session_key, session_key,
)
from scpnode.web.users import Role, add_user

PASSWORD = "correct horse battery"


@pytest.fixture
def node(tmp_path):
    config = tmp_path / "node.toml"
    config.write_text(f'[node]\ndatabase = "{tmp_path / "node.db"}"\nstorage_dir = "{tmp_path / "store"}"\n'
                      "[web]\nsecure_cookies = false\n")
    settings = Settings.model_validate({"node": {"database": str(tmp_path / "node.db")},
                                        "web": {"secure_cookies": False}})
    db = ThreadDatabases(settings.node.database).get()
    prepare(db)
    add_user(db, "carol", PASSWORD, Role.COORDINATOR)
    return settings, db, config


def logged_in_cookie(app) -> str:
    client = TestClient(app)
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    response = client.post("/login", data={"username": "carol", "password": PASSWORD, "csrf_token": token},
                           follow_redirects=False)
    assert response.status_code == 303
    return client.cookies[SESSION_COOKIE]


def worklist_status(app, cookie: str) -> int:
    client = TestClient(app, cookies={SESSION_COOKIE: cookie})
    return client.get("/worklist", follow_redirects=False).status_code


def test_a_session_survives_a_restart_and_ends_when_the_key_is_rotated(node, capsys):
    settings, db, config = node
    first = create_app(settings, ThreadDatabases(settings.node.database))
    cookie = logged_in_cookie(first)
    second = create_app(settings, ThreadDatabases(settings.node.database))
    assert worklist_status(second, cookie) == 200

    assert main(["--config", str(config), "users", "rotate-session-key"]) == 0
    assert worklist_status(second, cookie) == 303  # the running app refuses it at once: back to the login page
    assert worklist_status(first, cookie) == 303
    assert worklist_status(second, logged_in_cookie(second)) == 200
    event = recent(db)[0]
    assert event.event == SESSION_KEY_ROTATED and event.username.startswith("os:")
    capsys.readouterr()
    assert main(["--config", str(config), "users", "audit"]) == 0
    assert f"{SESSION_KEY_ROTATED} " in capsys.readouterr().out


def test_the_key_is_made_once_and_replaced_only_by_rotation(node):
    _, db, _ = node
    prepare(db)
    with pytest.raises(SessionKeyMissing):
        session_key(db)
    ensure_session_key(db)
    key = session_key(db)
    ensure_session_key(db)
    assert session_key(db) == key and len(key) >= 64
    rotate_session_key(db, by="test")
    assert session_key(db) != key
    assert db.execute("select count(*) from web_session_key").fetchone()[0] == 1
