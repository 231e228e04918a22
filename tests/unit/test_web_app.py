"""The web UI through Starlette's TestClient: login, roles, CSRF, bad input, pages, export."""

import base64
import csv
import io
import logging
import re
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from scpnode.config import Settings
from scpnode.db import ThreadDatabases
from scpnode.pipeline.jobs import FAILED, QUEUED, AnalysisTarget, JobQueue
from scpnode.schema import prepare
from scpnode.web import create_app
from scpnode.web.security import SESSION_COOKIE
from scpnode.web.users import Role, add_user, set_disabled, set_password
from scpnode.worklist import Status, audit_log, get_row
from tests.unit.worklist_samples import add_study, draw_overlay

PASSWORD = "correct horse battery"


@pytest.fixture
def node(tmp_path):
    settings = Settings.model_validate({
        "node": {"database": str(tmp_path / "node.db"), "storage_dir": str(tmp_path / "store")},
        "web": {"secure_cookies": False, "pacs_viewer_url": "https://pacs.example/viewer?StudyInstanceUIDs={study_uid}"},
    })
    databases = ThreadDatabases(settings.node.database)
    db = databases.get()
    prepare(db)
    add_user(db, "carol", PASSWORD, Role.COORDINATOR)
    add_user(db, "root", PASSWORD, Role.ADMIN)
    overlay = draw_overlay(tmp_path / "overlay.png")
    ids = {
        "normal": add_study(db, 1, overlay=overlay),
        "flagged": add_study(db, 2, l1_hu=92, vbmd=66, genant=2, overlay=overlay),
        "no_overlay": add_study(db, 3),
    }
    app = create_app(settings, databases)
    return settings, db, app, ids


def login(client: TestClient, username: str, password: str = PASSWORD):
    page = client.get("/login")
    return client.post("/login", data={"username": username, "password": password,
                                       "csrf_token": _csrf(page.text)}, follow_redirects=False)


def _csrf(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def test_every_page_needs_a_login(node):
    _, _, app, ids = node
    client = TestClient(app)
    for path in ["/worklist", "/worklist.csv", f"/studies/{ids['normal']}", f"/studies/{ids['normal']}/overlay.png",
                 "/admin/status"]:
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"] == "/login", path
    response = client.post(f"/studies/{ids['normal']}/status", data={"action": "in_review"}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/login"


def test_wrong_password_and_disabled_user_are_refused(node):
    _, db, app, _ = node
    client = TestClient(app)
    response = login(client, "carol", "not the password")
    assert response.status_code == 401 and "Unknown user or wrong password" in response.text
    assert login(client, "mallory").status_code == 401
    assert login(client, "carol").status_code == 303
    assert client.get("/worklist").status_code == 200
    set_disabled(db, "carol")
    assert client.get("/worklist", follow_redirects=False).status_code == 303


def test_login_returns_to_the_page_that_asked(node):
    _, _, app, ids = node
    client = TestClient(app)
    client.get(f"/studies/{ids['flagged']}")
    response = login(client, "carol")
    assert response.headers["location"] == f"/studies/{ids['flagged']}"


def test_session_cookie_is_httponly_strict_and_secure_by_default(node, tmp_path):
    settings, _, _, _ = node
    settings.web.secure_cookies = True
    client = TestClient(create_app(settings, ThreadDatabases(settings.node.database)), base_url="https://testserver")
    response = login(client, "carol")
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "secure" in cookie
    assert client.get("/worklist").status_code == 200


def test_worklist_puts_flagged_first_and_security_headers(node):
    _, _, app, ids = node
    client = TestClient(app)
    login(client, "carol")
    response = client.get("/worklist")
    rows = re.findall(r'href="/studies/(\d+)"', response.text)
    assert int(rows[0]) == ids["flagged"] and len(rows) == 3
    assert "low L1 attenuation" in response.text and "uncalibrated" in response.text
    assert response.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert re.fullmatch(r"app;dur=[\d.]+", response.headers["server-timing"])


def test_search_keeps_patient_data_out_of_urls(node, caplog):
    _, _, app, ids = node
    client = TestClient(app)
    login(client, "carol")
    page = client.get("/worklist?status=new")
    with caplog.at_level(logging.DEBUG):
        response = client.post("/worklist/search", data={"search": "ACC00003", "status": "new",
                                                         "csrf_token": _csrf(page.text)}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/worklist?status=new"
    listed = client.get(response.headers["location"])
    assert re.findall(r'href="/studies/(\d+)"', listed.text) == [str(ids["no_overlay"])]
    assert "ACC00003" not in caplog.text and "PAT00003" not in caplog.text
    exported = list(csv.DictReader(io.StringIO(client.get("/worklist.csv").text)))
    assert [r["accession_number"] for r in exported] == ["ACC00003"]
    # ...and out of the cookie: its payload is readable base64, the term stays in the node database.
    payload = client.cookies[SESSION_COOKIE].split(".")[0]
    decoded = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    assert b"ACC00003" not in decoded and b"search" not in decoded


def test_logout_ends_the_session_for_every_copy_of_the_cookie(node):
    _, _, app, _ = node
    client = TestClient(app)
    login(client, "carol")
    copied = client.cookies[SESSION_COOKIE]
    page = client.get("/worklist")
    assert client.post("/logout", data={"csrf_token": _csrf(page.text)}, follow_redirects=False).status_code == 303
    thief = TestClient(app, cookies={SESSION_COOKIE: copied})
    response = thief.get("/worklist", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/login"


def test_a_new_password_ends_every_open_session_of_the_user(node):
    _, db, app, _ = node
    laptop, workstation = TestClient(app), TestClient(app)
    login(laptop, "carol")
    login(workstation, "carol")
    assert laptop.get("/worklist").status_code == 200 and workstation.get("/worklist").status_code == 200
    set_password(db, "carol", "a new long passphrase")
    for client in (laptop, workstation):
        assert client.get("/worklist", follow_redirects=False).headers["location"] == "/login"


@pytest.mark.parametrize("query", ["status=closed", "date_from=yesterday", "page=0", "page_size=abc",
                                   "sort=1;drop", "date_from=2026-05-01&date_to=2026-01-01", "bogus=1"])
def test_malformed_filters_give_a_400_page_without_traceback(node, query):
    _, _, app, _ = node
    client = TestClient(app)
    login(client, "carol")
    for path in ("/worklist", "/worklist.csv"):
        response = client.get(f"{path}?{query}")
        assert response.status_code == 400
        assert "Filter not understood" in response.text and "Traceback" not in response.text


def test_unknown_study_and_path_give_404_pages(node):
    _, _, app, ids = node
    client = TestClient(app)
    login(client, "carol")
    for path in ["/studies/999999", "/studies/999999/overlay.png", f"/studies/{ids['no_overlay']}/overlay.png",
                 "/studies/not-a-number", "/nowhere"]:
        response = client.get(path)
        assert response.status_code == 404, path
        assert "Not found" in response.text and "Traceback" not in response.text


def test_forged_or_missing_csrf_token_is_403_and_changes_nothing(node):
    _, db, app, ids = node
    client = TestClient(app)
    login(client, "carol")
    for data in ({"action": "referred", "note": "x", "csrf_token": "forged"}, {"action": "referred", "note": "x"}):
        response = client.post(f"/studies/{ids['flagged']}/status", data=data)
        assert response.status_code == 403 and "security token" in response.text
    assert get_row(db, ids["flagged"]).status is Status.NEW
    assert audit_log(db, ids["flagged"]) == []


def test_detail_page_refer_with_note_and_audit(node):
    _, db, app, ids = node
    client = TestClient(app)
    login(client, "carol")
    page = client.get(f"/studies/{ids['flagged']}")
    assert page.status_code == 200
    assert "Test, Patient2" in page.text and "ACC00002" in page.text
    assert "https://pacs.example/viewer?StudyInstanceUIDs=1.2.826.0.1.3680043.10.100002" in page.text
    assert "uncalibrated (research use)" in page.text and "che2025-published" in page.text
    assert f'src="/studies/{ids["flagged"]}/overlay.png"' in page.text
    assert client.get(f"/studies/{ids['flagged']}/overlay.png").content[:8] == b"\x89PNG\r\n\x1a\n"

    token = _csrf(page.text)
    missing_note = client.post(f"/studies/{ids['flagged']}/status", data={"action": "referred", "csrf_token": token})
    assert missing_note.status_code == 400 and "a referral needs a note" in missing_note.text
    bad_action = client.post(f"/studies/{ids['flagged']}/status", data={"action": "deleted", "csrf_token": token})
    assert bad_action.status_code == 400 and "unknown status" in bad_action.text
    done = client.post(f"/studies/{ids['flagged']}/status",
                       data={"action": "referred", "note": "DXA and bone clinic", "csrf_token": token})
    assert done.status_code == 200 and "Marked referred." in done.text
    assert "DXA and bone clinic" in done.text and "carol" in done.text
    (entry,) = audit_log(db, ids["flagged"])
    assert (entry.user, entry.to_status, entry.note) == ("carol", "referred", "DXA and bone clinic")


def test_only_admins_see_node_status_and_retry_jobs(node):
    settings, db, app, _ = node
    queue = JobQueue(db)
    job = queue.enqueue(AnalysisTarget("1.2.3", "1.2.3.4", Path("/store/x"), 1))
    queue.claim_next()
    queue.finish(job.id, FAILED, error="segmentation: no vertebra found")

    coordinator = TestClient(app)
    login(coordinator, "carol")
    assert coordinator.get("/admin/status").status_code == 403
    token = _csrf(coordinator.get("/worklist").text)
    assert coordinator.post(f"/admin/jobs/{job.id}/retry", data={"csrf_token": token}).status_code == 403
    assert queue.get(job.id).state == FAILED

    admin = TestClient(app)
    login(admin, "root")
    page = admin.get("/admin/status")
    assert page.status_code == 200 and "segmentation: no vertebra found" in page.text and "1.2.3.4" not in page.text
    retried = admin.post(f"/admin/jobs/{job.id}/retry", data={"csrf_token": _csrf(page.text)})
    assert retried.status_code == 200 and f"Job {job.id} is queued again" in retried.text
    assert queue.get(job.id).state == QUEUED
    again = admin.post(f"/admin/jobs/{job.id}/retry", data={"csrf_token": _csrf(page.text)})
    assert again.status_code == 409 and "only failed jobs can be retried" in again.text
    assert admin.post("/admin/jobs/4242/retry", data={"csrf_token": _csrf(page.text)}).status_code == 404


def test_node_status_shows_outbox_peers_and_disk(node):
    settings, db, app, _ = node
    settings.peers = Settings.model_validate({"peers": [{"ae_title": "PACS", "host": "10.0.0.5"}]}).peers
    admin = TestClient(app)
    login(admin, "root")
    page = admin.get("/admin/status").text
    outbox_section = page.split("<h2>Outbox</h2>")[1].split("<h2>")[0]
    assert re.findall(r"<li>(\w+) <b>(\d+)</b></li>", outbox_section) == [("pending", "0"), ("sent", "0"),
                                                                           ("failed", "0")]
    assert "<tr><td>PACS</td><td>10.0.0.5</td><td>never</td></tr>" in page

    for state in ("pending", "sent", "sent", "failed"):
        db["outbox"].insert({"path": "/x", "destination": "pacs", "sop_instance_uid": f"1.2.{len(state)}.{state}",
                             "sop_class_uid": "1.2", "state": state, "next_try_at": 0, "created_at": 0})
    db["studies"].insert({"study_instance_uid": "1.7", "first_received_at": 0, "last_received_at": 0})
    db["series"].insert({"series_instance_uid": "1.8", "study_instance_uid": "1.7", "folder": "/x", "state": "open",
                         "first_received_at": 0, "opened_at": 0, "last_received_at": 0, "total_bytes": 3 * 2**20})
    db["instances"].insert({"sop_instance_uid": "1.9", "series_instance_uid": "1.8", "study_instance_uid": "1.7",
                            "sop_class_uid": "1.2", "transfer_syntax_uid": "1.2.840.10008.1.2.1", "path": "/x",
                            "size": 10, "sha256": "0", "received_at": 1_780_000_000.0, "calling_ae_title": "CT1"})
    db.conn.commit()
    page = admin.get("/admin/status").text
    outbox_section = page.split("<h2>Outbox</h2>")[1].split("<h2>")[0]
    outbox_counts = re.findall(r"<li>(\w+) <b>(\d+)</b></li>", outbox_section)
    assert outbox_counts == [("pending", "1"), ("sent", "2"), ("failed", "1")]
    peers = re.findall(r"<tr><td>(\w+)</td><td>([^<]+)</td><td>([^<]+)</td></tr>", page)
    assert ("CT1", "(not configured)", "2026-05-28T20:26:40+00:00") in peers
    assert ("PACS", "10.0.0.5", "never") in peers
    assert "image store" in page and "3.0 MiB" in page


def test_a_failing_page_is_a_500_page_without_traceback(node, caplog):
    settings, _, _, _ = node

    class BrokenStatus:
        def snapshot(self):
            raise RuntimeError("disk unreadable /secret/path")

        def retry_job(self, job_id):
            raise RuntimeError("unreachable")

    app = create_app(settings, ThreadDatabases(settings.node.database), node_status=lambda db: BrokenStatus())
    client = TestClient(app, raise_server_exceptions=False)
    login(client, "root")
    with caplog.at_level(logging.ERROR):
        response = client.get("/admin/status")
    assert response.status_code == 500 and "Something went wrong" in response.text
    assert "Traceback" not in response.text and "/secret/path" not in response.text
    assert "disk unreadable" in caplog.text


def test_login_page_explains_how_to_create_the_first_user(tmp_path):
    settings = Settings.model_validate({"node": {"database": str(tmp_path / "empty.db")}})
    client = TestClient(create_app(settings, ThreadDatabases(settings.node.database)))
    assert "users add NAME --role admin" in client.get("/login").text
