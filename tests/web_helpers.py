"""Helpers for tests that drive the web UI in Chromium (the ``browser`` fixture is in ``tests/conftest.py``)."""

from __future__ import annotations

PASSWORD = "correct horse battery"
"""The password of every test user."""


def log_in(page, base: str, username: str) -> None:
    page.goto(f"{base}/worklist")
    assert page.url.endswith("/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button:has-text('Log in')")
    page.wait_for_url(f"{base}/worklist")
