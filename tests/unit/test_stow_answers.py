"""How STOW-RS answers (PS3.18 10.5.3) are sorted into stored, refused and not reachable."""

from __future__ import annotations

import json

import pytest
import requests

from scpnode.delivery.stow import Delivery, Outcome, _from_response_module, _http_failure

UID = "1.2.3.4"


def failed_sop(uid: str, reason: int) -> dict:
    return {"00081198": {"vr": "SQ", "Value": [{"00081155": {"vr": "UI", "Value": [uid]},
                                                  "00081197": {"vr": "US", "Value": [reason]}}]}}


def response(status: int, body: object | None = None) -> requests.Response:
    answer = requests.Response()
    answer.status_code, answer.reason = status, requests.status_codes._codes[status][0].replace("_", " ").title()
    if body is not None:
        answer._content = json.dumps(body).encode()
        answer.headers["Content-Type"] = "application/dicom+json"
    else:
        answer._content = b""
    return answer


def test_success_answers():
    assert _from_response_module({}, UID).outcome == Outcome.STORED
    assert _from_response_module(failed_sop("9.9", 0xC000), UID).outcome == Outcome.STORED  # another instance
    refused = _from_response_module(failed_sop(UID, 0xA900), UID)
    assert refused == Delivery(Outcome.REFUSED, "failure reason 0xA900")
    assert _from_response_module(failed_sop(UID, 0xA700), UID).outcome == Outcome.NOT_REACHABLE  # out of resources


@pytest.mark.parametrize("status, body, outcome, detail", [
    (409, failed_sop(UID, 0xC122), Outcome.REFUSED, "HTTP 409 Conflict, failure reason 0xC122"),
    (409, None, Outcome.REFUSED, "HTTP 409 Conflict"),
    (401, None, Outcome.REFUSED, "HTTP 401 Unauthorized"),
    (415, {"message": "not json dicom"}, Outcome.REFUSED, "HTTP 415 Unsupported Media Type"),
    (503, None, Outcome.NOT_REACHABLE, "HTTP 503 Service Unavailable"),
    (429, None, Outcome.NOT_REACHABLE, "HTTP 429 Too Many Requests"),
    (409, failed_sop(UID, 0xA700), Outcome.NOT_REACHABLE, "HTTP 409 Conflict, failure reason 0xA700"),
])
def test_error_answers(status, body, outcome, detail):
    assert _http_failure(response(status, body), UID) == Delivery(outcome, detail)
