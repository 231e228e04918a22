"""The coordinator's and the admin's day in headless Chromium (Debian's, driven by Playwright).

A real node database, a real uvicorn server on a free loopback port, a real
browser: log in, see the flagged study first, filter, open the detail page
with its overlay, refer with a note, see the audit entry, export the CSV, and
be refused without a login; an admin retries a failed job from the ``jobs``
table of :mod:`scpnode.pipeline.jobs`; a session outlives a server restart but not a
key rotation, and password guessing meets the lockout page. Screenshots go
to ``output_dir``.
"""

from __future__ import annotations

import csv
import logging
import re
from datetime import date
from pathlib import Path

import pytest

from scpnode.config import Settings
from scpnode.db import ThreadDatabases, database_path
from scpnode.delivery.orthanc import free_port
from scpnode.pipeline.jobs import FAILED, QUEUED, AnalysisTarget, JobQueue
from scpnode.schema import prepare
from scpnode.web import WebServer, create_app
from scpnode.web.session_key import rotate_session_key
from scpnode.web.users import Role, add_user
from scpnode.worklist import Status, audit_log, get_row
from tests.unit.worklist_samples import add_study, draw_overlay
from tests.web_helpers import PASSWORD, log_in

pytestmark = pytest.mark.integration


@pytest.fixture
def node(tmp_path):
    settings = Settings.model_validate({
        "node": {"database": str(tmp_path / "node.db"), "storage_dir": str(tmp_path / "store")},
        "web": {"secure_cookies": False, "port": free_port()},
    })
    databases = ThreadDatabases(settings.node.database)
    db = databases.get()
    prepare(db)
    add_user(db, "carol", PASSWORD, Role.COORDINATOR)
    add_user(db, "root", PASSWORD, Role.ADMIN)
    overlay = draw_overlay(tmp_path / "overlay.png")
    for index in range(40):
        add_study(db, index, overlay=overlay, study_date=date(2026, 2, 1 + index % 28))
    flagged = add_study(db, 500, l1_hu=88, vbmd=61, genant=2, overlay=overlay, study_date=date(2025, 6, 3))
    high_risk = add_study(db, 501, risk=(0.31, "high"), overlay=overlay, study_date=date(2026, 1, 10))
    queue = JobQueue(db)
    job = queue.enqueue(AnalysisTarget("1.2.3.9", "1.2.3.9.1", Path("/store/x"), 1))
    queue.claim_next()
    queue.finish(job.id, FAILED, error="segment: no vertebral body found in the field of view")
    server = WebServer(create_app(settings, databases), settings.web.host, settings.web.port).start()
    try:
        yield server, db, {"flagged": flagged, "high_risk": high_risk, "job": job.id}
    finally:
        server.stop()


def test_coordinator_reviews_flagged_study(node, browser, output_dir, caplog):
    server, db, ids = node
    base = server.url
    context = browser.new_context(accept_downloads=True, viewport={"width": 1400, "height": 900})
    page = context.new_page()

    # refused without a login, for pages and for the export alike
    page.goto(f"{base}/studies/{ids['flagged']}")
    assert page.url.endswith("/login")
    assert context.request.get(f"{base}/worklist.csv", max_redirects=0).status == 303

    with caplog.at_level(logging.INFO):
        log_in(page, base, "carol")
        first_rows = page.locator("table.worklist tbody tr")
        assert first_rows.count() == 42
        top_two = [first_rows.nth(i) for i in range(2)]
        assert all("flagged" in (row.get_attribute("class") or "") for row in top_two)
        assert {"PAT00500", "PAT00501"} == {row.locator("td").nth(2).inner_text() for row in top_two}
        assert "flagged" not in (first_rows.nth(2).get_attribute("class") or "")
        page.screenshot(path=output_dir / "worklist.png", full_page=True)

        # filter: flag reason "prevalent fracture", then by study date
        page.select_option("select[name=flag_reason]", "fracture")
        page.click("form.filters button:has-text('Filter')")
        assert page.locator("table.worklist tbody tr").count() == 1
        page.goto(f"{base}/worklist")
        page.fill("input[name=date_from]", "2026-02-01")
        page.fill("input[name=date_to]", "2026-02-10")
        page.click("form.filters button:has-text('Filter')")
        assert "date_from=2026-02-01" in page.url
        dates = page.locator("table.worklist tbody tr td:nth-child(2)").all_inner_texts()
        assert dates and all("2026-02-01" <= d <= "2026-02-10" for d in dates)

        # search by accession: by POST, so the accession is not in the URL or the access log
        page.goto(f"{base}/worklist")
        page.fill("input[name=search]", "ACC00500")
        page.click("form.search button:has-text('Search')")
        assert "ACC00500" not in page.url
        assert page.locator("table.worklist tbody tr").count() == 1

        # detail page with the overlay image loaded
        page.click("a:has-text('PAT00500')")
        page.wait_for_url(f"{base}/studies/{ids['flagged']}")
        overlay = page.locator("figure.overlay img")
        overlay.wait_for()
        assert page.evaluate("(img) => img.complete && img.naturalWidth", overlay.element_handle()) == 320
        assert "uncalibrated" in page.locator("dd.risk").inner_text()
        assert page.locator("table.levels tbody tr").count() == 4
        page.screenshot(path=output_dir / "detail.png", full_page=True)

        # refer with a note; the audit entry appears with user and time
        page.fill("input[placeholder='to whom, why']", "DXA, bone clinic Dr Lee")
        page.click("button:has-text('Refer')")
        page.wait_for_selector("p.flash")
        audit = page.locator("table.audit tbody tr").first.inner_text()
        assert "carol" in audit and "referred" in audit and "DXA, bone clinic Dr Lee" in audit
        assert str(date.today().year) in audit
        page.screenshot(path=output_dir / "detail_after_referral.png", full_page=True)
        assert get_row(db, ids["flagged"]).status is Status.REFERRED
        assert audit_log(db, ids["flagged"])[0].user == "carol"

        # export the filtered list (search cleared, only referred)
        page.goto(f"{base}/worklist?status=referred")
        page.click("form.search button:has-text('Clear search')")
        with page.expect_download() as download_info:
            page.click("a:has-text('Export CSV')")
        path = output_dir / "worklist.csv"
        download_info.value.save_as(path)
        rows = list(csv.DictReader(path.open(encoding="utf-8")))
        assert [(r["accession_number"], r["status"], r["status_note"]) for r in rows] == [
            ("ACC00500", "referred", "DXA, bone clinic Dr Lee")]
        assert rows[0]["flag_reasons"] == "vbmd l1_hu fracture" and rows[0]["risk"] == "uncalibrated"

        # a coordinator does not see node status
        assert page.goto(f"{base}/admin/status").status == 403

    access = [r.getMessage() for r in caplog.records if r.name == "uvicorn.access"]
    assert any("/worklist" in line for line in access)
    logged = caplog.text + "\n".join(access)
    assert "ACC00500" not in logged and "PAT00500" not in logged and "Test^Patient500" not in logged
    context.close()


def test_admin_retries_a_failed_job(node, browser, output_dir):
    server, db, ids = node
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    log_in(page, server.url, "root")
    page.click("nav a:has-text('Node status')")
    row = page.locator("table.jobs tbody tr.failed")
    assert "no vertebral body found" in row.inner_text()
    page.screenshot(path=output_dir / "node_status.png", full_page=True)
    row.locator("button:has-text('Retry')").click()
    page.wait_for_selector("p.flash")
    assert f"Job {ids['job']} is queued again" in page.locator("p.flash").inner_text()
    assert page.locator("table.jobs tbody tr.failed").count() == 0
    assert JobQueue(db).get(ids["job"]).state == QUEUED


def test_sessions_survive_a_restart_until_the_key_is_rotated_and_guessing_is_locked_out(
        node, browser, output_dir):
    server, db, _ = node
    base = server.url
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    log_in(page, base, "root")

    # a new server process on the same database (an upgrade, a restart) keeps the coordinator logged in
    server.stop()
    settings = Settings.model_validate({"node": {"database": str(database_path(db))},
                                        "web": {"secure_cookies": False, "port": server.port}})
    restarted = WebServer(create_app(settings, ThreadDatabases(settings.node.database)), server.host,
                          server.port).start()
    try:
        assert page.goto(f"{base}/worklist").status == 200 and page.url == f"{base}/worklist"

        rotate_session_key(db, by="test")
        page.goto(f"{base}/worklist")
        assert page.url == f"{base}/login"

        for attempt in range(5):
            page.fill("input[name=username]", "root")
            page.fill("input[name=password]", f"guess number {attempt}")
            with page.expect_response(f"{base}/login") as answer:
                page.click("button:has-text('Log in')")
            assert answer.value.status == 401
        page.fill("input[name=password]", PASSWORD)
        with page.expect_response(f"{base}/login") as answer:
            page.click("button:has-text('Log in')")
        assert answer.value.status == 429
        assert "Too many failed logins. Try again in 15 minutes." in page.locator("p.error").inner_text()
        page.screenshot(path=output_dir / "login_locked.png", full_page=True)

        admin = browser.new_page(viewport={"width": 1400, "height": 900})
        db.execute("delete from login_failures")  # as if the window had passed
        db.conn.commit()
        log_in(admin, base, "root")
        admin.goto(f"{base}/admin/status")
        events = admin.locator("table.security tbody tr").all_inner_texts()
        assert "login locked out" in events[0] and "root" in events[0] and "session key rotated" in events[1]
        admin.screenshot(path=output_dir / "node_status_security.png", full_page=True)
    finally:
        restarted.stop()


def test_after_logout_a_copied_session_cookie_is_refused(node, browser, output_dir):
    """A cookie copied from a shared workstation (or a proxy log) stops working when its owner logs out."""
    server, _, _ = node
    base = server.url
    owner = browser.new_context()
    page = owner.new_page()
    log_in(page, base, "carol")
    copied = owner.cookies()
    assert [cookie["name"] for cookie in copied] == ["scpnode_session"]

    thief = browser.new_context()
    thief.add_cookies(copied)
    stolen = thief.new_page()
    stolen.goto(f"{base}/worklist")
    assert stolen.url == f"{base}/worklist", "the copy works while the session is open"

    page.click("button:has-text('Log out')")
    page.wait_for_url(f"{base}/login")
    stolen.goto(f"{base}/worklist")
    assert stolen.url.endswith("/login")
    stolen.screenshot(path=output_dir / "copied_cookie_after_logout.png")


@pytest.mark.parametrize(("trusted", "counted_as"), [(["127.0.0.1"], "203.0.113.7"), (["10.9.9.9"], "127.0.0.1")])
def test_forwarded_addresses_are_believed_only_from_configured_proxies(tmp_path, trusted, counted_as):
    """The per-address login lockout counts the address a trusted proxy names, else the connection's own."""
    import http.cookiejar
    import urllib.error
    import urllib.parse
    import urllib.request

    settings = Settings.model_validate({
        "node": {"database": str(tmp_path / "node.db"), "storage_dir": str(tmp_path / "store")},
        "web": {"secure_cookies": False, "port": free_port(), "trusted_proxies": trusted},
    })
    databases = ThreadDatabases(settings.node.database)
    prepare(databases.get())
    add_user(databases.get(), "carol", PASSWORD, Role.COORDINATOR)
    server = WebServer(create_app(settings, databases), settings.web.host, settings.web.port,
                       settings.web.trusted_proxies).start()
    try:
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        opener.addheaders = [("X-Forwarded-For", "203.0.113.7")]
        page = opener.open(f"{server.url}/login").read().decode()
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        form = urllib.parse.urlencode({"username": "carol", "password": "wrong", "csrf_token": token}).encode()
        with pytest.raises(urllib.error.HTTPError) as refused:
            opener.open(f"{server.url}/login", data=form)
        assert refused.value.code == 401
    finally:
        server.stop()
    rows = databases.get().execute("select client from login_failures").fetchall()
    assert rows == [(counted_as,)]
