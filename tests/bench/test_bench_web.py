"""Worklist page with 10,000 rows: server time of the list, sorted, filtered, deep-page and export requests.

Figures come from the ``Server-Timing: app;dur=`` header (time in the app until
the response starts) over real HTTP to uvicorn; the target for the list page
is < 300 ms. Prints figures, asserts nothing about time.
"""

from __future__ import annotations

import re
import statistics
import time
from datetime import date, timedelta

import httpx2
import pytest

from scpnode.config import Settings
from scpnode.db import ThreadDatabases
from scpnode.delivery.orthanc import free_port
from scpnode.schema import prepare
from scpnode.web import WebServer, create_app
from scpnode.web.users import Role, add_user
from tests.unit.worklist_samples import add_study

pytestmark = pytest.mark.bench

ROWS = 10_000
REPEATS = 7


def test_worklist_pages_with_10000_rows(tmp_path, bench_report):
    settings = Settings.model_validate({
        "node": {"database": str(tmp_path / "node.db"), "storage_dir": str(tmp_path / "store")},
        "web": {"secure_cookies": False, "port": free_port()},
    })
    databases = ThreadDatabases(settings.node.database)
    db = databases.get()
    prepare(db)
    add_user(db, "carol", "correct horse battery", Role.COORDINATOR)
    started = time.perf_counter()
    for i in range(ROWS):
        # about one study in eight is flagged, for one reason or another
        add_study(db, i, l1_hu=95.0 if i % 11 == 0 else 150.0 + i % 60, vbmd=70.0 if i % 17 == 0 else 140.0,
                  genant=2 if i % 53 == 0 else 0, study_date=date(2024, 1, 1) + timedelta(days=i % 700))
    bench_report("add_scored_study", rows=ROWS, ms_per_row=(time.perf_counter() - started) * 1000 / ROWS)

    with WebServer(create_app(settings, databases), settings.web.host, settings.web.port) as server, \
            httpx2.Client(base_url=server.url) as client:
        login = client.get("/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', login.text).group(1)
        client.post("/login", data={"username": "carol", "password": "correct horse battery", "csrf_token": token})
        requests = {
            "list page (flagged first)": "/worklist",
            "sorted by L1 HU": "/worklist?sort=l1_hu&order=asc",
            "filtered: fracture, 2024": "/worklist?flag_reason=fracture&date_from=2024-01-01&date_to=2024-12-31",
            "page 150 of 200": "/worklist?page=150",
            "study detail": "/studies/5000",
            "CSV export, all rows": "/worklist.csv",
        }
        for label, path in requests.items():
            server_ms, wall_ms = [], []
            for _ in range(REPEATS):
                before = time.perf_counter()
                response = client.get(path)
                wall_ms.append((time.perf_counter() - before) * 1000)
                assert response.status_code == 200, (path, response.text[:200])
                server_ms.append(float(response.headers["server-timing"].split("dur=")[1]))
            bench_report(f"{label} ({ROWS} rows)", server_ms_median=statistics.median(server_ms),
                         server_ms_max=max(server_ms), wall_ms_median=statistics.median(wall_ms),
                         bytes=len(response.content))
