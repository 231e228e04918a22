"""Login rate limiting: counting per user name and client, the sliding window, reset on success, the 429 page."""

import logging
import re

import pytest
from starlette.testclient import TestClient

from scpnode.cli import main
from scpnode.config import Settings
from scpnode.db import ThreadDatabases
from scpnode.schema import open_node_database, prepare
from scpnode.web import create_app
from scpnode.web.login_throttle import LoginThrottle
from scpnode.web.security_audit import LOGIN_LOCKED_OUT, LOGIN_UNLOCKED, recent
from scpnode.web.users import Role, add_user

PASSWORD = "correct horse battery"
WINDOW = 15 * 60


class Clock:
    def __init__(self, now: float = 1_780_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def db(tmp_path):
    database = open_node_database(tmp_path / "node.db")
    return database


def fail(throttle, db, username, client="10.0.0.9"):
    attempt = throttle.begin(db, username, client)
    if not attempt.refused:
        throttle.failed(db, attempt)
    return attempt


def test_the_fifth_failure_locks_the_user_name_until_the_window_passes(db):
    clock = Clock()
    throttle = LoginThrottle(5, WINDOW, clock)
    for n in range(5):
        assert not fail(throttle, db, "carol", client=f"10.0.0.{n}").refused
        clock.now += 60
    refused = throttle.begin(db, "CAROL ", "10.0.0.99")  # user names compare as the users table does
    assert refused.refused and refused.retry_after_seconds == WINDOW - 5 * 60 and refused.retry_after_minutes == 10
    assert throttle.begin(db, "dave", "10.0.0.99").failure_id is not None

    clock.now += refused.retry_after_seconds - 1
    assert throttle.begin(db, "carol", "10.0.0.99").refused
    clock.now += 1  # the oldest failure has left the window: one attempt, and locked again if it fails
    assert not fail(throttle, db, "carol", client="10.0.0.98").refused
    assert throttle.begin(db, "carol", "10.0.0.99").retry_after_seconds == 60


def test_refused_attempts_are_not_counted_so_the_lockout_ends(db):
    clock = Clock()
    throttle = LoginThrottle(3, WINDOW, clock)
    for _ in range(3):
        fail(throttle, db, "carol")
    for _ in range(50):
        clock.now += 10
        assert throttle.begin(db, "carol", "10.0.0.9").refused
    clock.now = Clock().now + WINDOW
    assert not throttle.begin(db, "carol", "10.0.0.9").refused


def test_a_success_resets_the_user_names_counter(db):
    clock = Clock()
    throttle = LoginThrottle(5, WINDOW, clock)
    for _ in range(4):
        fail(throttle, db, "carol")
    throttle.succeeded(db, throttle.begin(db, "Carol", "10.0.0.9"))
    for _ in range(4):
        assert not fail(throttle, db, "carol", client="10.0.0.7").refused
    assert not throttle.begin(db, "carol", "10.0.0.7").refused


def test_one_client_guessing_many_user_names_is_locked_out(db, caplog):
    throttle = LoginThrottle(5, WINDOW, Clock())
    with caplog.at_level(logging.INFO):
        for n in range(5):
            fail(throttle, db, f"user{n}", client="192.0.2.1")
    assert throttle.begin(db, "root", "192.0.2.1").refused
    assert not throttle.begin(db, "root", "192.0.2.2").refused
    [event] = recent(db)
    assert (event.event, event.username, event.client) == (LOGIN_LOCKED_OUT, "user4", "192.0.2.1")
    assert event.detail == "client address locked: 5 failed logins within 15 min"
    [lockout] = [r for r in caplog.records if r.event == "web_login_locked_out"]
    assert lockout.levelno == logging.WARNING and lockout.client == "192.0.2.1"


def test_failures_survive_a_restart(tmp_path):
    clock = Clock()
    first = open_node_database(tmp_path / "node.db")
    for _ in range(2):
        fail(LoginThrottle(2, WINDOW, clock), first, "carol")
    first.conn.close()
    assert LoginThrottle(2, WINDOW, clock).begin(open_node_database(tmp_path / "node.db"), "carol", "10.0.0.1").refused


@pytest.fixture
def app(tmp_path):
    settings = Settings.model_validate({"node": {"database": str(tmp_path / "node.db")},
                                        "web": {"secure_cookies": False, "login_max_failures": 3}})
    databases = ThreadDatabases(settings.node.database)
    prepare(databases.get())
    add_user(databases.get(), "carol", PASSWORD, Role.COORDINATOR)
    return create_app(settings, databases), databases.get()


def login(client, username, password):
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text).group(1)
    return client.post("/login", data={"username": username, "password": password, "csrf_token": token},
                       follow_redirects=False)


def test_the_login_page_answers_429_after_too_many_failures(app, caplog):
    app, db = app
    client = TestClient(app)
    with caplog.at_level(logging.DEBUG):
        assert [login(client, "carol", "wrong password 1").status_code for _ in range(3)] == [401, 401, 401]
        locked = login(client, "carol", PASSWORD)
    assert locked.status_code == 429 and WINDOW - 60 < int(locked.headers["retry-after"]) <= WINDOW
    assert error_message(locked) == "Too many failed logins. Try again in 15 minutes."
    assert client.get("/worklist", follow_redirects=False).status_code == 303
    assert "wrong password 1" not in caplog.text and PASSWORD not in caplog.text
    assert [e.event for e in recent(db)] == [LOGIN_LOCKED_OUT]

    # The client is now locked for any name: an unknown one gets the very same answer.
    unknown = login(client, "mallory", PASSWORD)
    assert unknown.status_code == 429 and error_message(unknown) == error_message(locked)


def error_message(response) -> str:
    return re.search(r'<p class="error" role="alert">([^<]*)</p>', response.text).group(1)


def test_an_admin_unlocks_a_user_name_or_a_client(tmp_path, capsys):
    config = tmp_path / "node.toml"
    config.write_text(f'[node]\ndatabase = "{tmp_path / "node.db"}"\n')
    db = open_node_database(tmp_path / "node.db")
    clock = Clock()
    throttle = LoginThrottle(5, WINDOW, clock)
    for n in range(5):
        fail(throttle, db, "carol", client=f"10.0.0.{n}")
        fail(throttle, db, f"guess{n}", client="10.0.0.50")
    assert throttle.begin(db, "carol", "10.0.0.99").refused
    assert throttle.begin(db, "dave", "10.0.0.50").refused

    assert main(["--config", str(config), "users", "unlock", "carol"]) == 0
    assert "cleared 5 failed login(s)" in capsys.readouterr().out
    assert not throttle.begin(db, "carol", "10.0.0.99").refused
    assert throttle.begin(db, "dave", "10.0.0.50").refused  # the guessing client stays locked
    assert main(["--config", str(config), "users", "unlock", "--client", "10.0.0.50"]) == 0
    assert not throttle.begin(db, "dave", "10.0.0.50").refused
    events = [event for event in recent(db) if event.event == LOGIN_UNLOCKED]
    assert [(e.username, e.client) for e in events] == [("", "10.0.0.50"), ("carol", "")]
    assert events[0].detail.startswith("5 failed logins cleared by os:")
    capsys.readouterr()
    assert main(["--config", str(config), "users", "unlock"]) == 2
    assert "name a user name, a client address or both" in capsys.readouterr().err
