"""Sending results to a DICOMweb server with STOW-RS (PS3.18 10.5), through dicomweb-client.

Each object goes in its own POST, so that the HTTP status speaks for exactly
one instance. The answer is sorted the way the C-STORE sender sorts statuses
(PS3.18 10.5.3, Table 10.5.3-1, and the Store Instances Response Module,
PS3.18 10.5.3.1):

- stored: 200 OK or 202 Accepted, unless the instance is in the Failed SOP
  Sequence (a Warning Reason is fine, as a C-STORE warning is);
- refused: 4xx answers (400, 401/403 credentials, 404 wrong URL, 409 Conflict,
  413, 415), or the instance in the Failed SOP Sequence; the outbox gives up
  after ``max_refusals`` of them and shows the answer;
- not reachable: no connection, a timeout, 408, 429 or 5xx; retried with
  backoff for as long as it takes, like a PACS that is down. A Failure Reason
  of the 0xA7xx family (out of resources) counts here too.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import requests
from dicomweb_client.api import DICOMwebClient
from pydicom.dataset import Dataset

from scpnode.config import ConfigError, DestinationSettings, TlsSettings

_FAILED_SOP_SEQUENCE = "00081198"
_REFERENCED_SOP_INSTANCE_UID = "00081155"
_FAILURE_REASON = "00081197"
_TRANSIENT_HTTP = frozenset({408, 429})


class Outcome(StrEnum):
    STORED = "stored"
    REFUSED = "refused"
    NOT_REACHABLE = "not_reachable"


@dataclass(frozen=True)
class Delivery:
    """What the server did with one instance, and its words for it."""

    outcome: Outcome
    detail: str = ""


class StowSender:
    """Stores instances on one ``protocol = "stow-rs"`` destination.

    Args:
        destination: its URL and credentials.
        tls: ``ca_file`` verifies an https server (else the system CAs);
            ``cert_file`` and ``key_file``, when set, are presented to it.
        timeout_seconds: for connecting and for the answer.

    Raises:
        ConfigError: a credentials file cannot be read.
    """

    def __init__(self, destination: DestinationSettings, tls: TlsSettings, timeout_seconds: float) -> None:
        self.destination = destination
        session = requests.Session()
        session.verify = str(tls.ca_file) if tls.ca_file else True
        if tls.cert_file and tls.key_file:
            session.cert = (str(tls.cert_file), str(tls.key_file))
        if destination.password_file is not None:
            session.auth = (destination.username, _secret(destination, destination.password_file))
        headers = {}
        if destination.token_file is not None:
            headers["Authorization"] = f"Bearer {_secret(destination, destination.token_file)}"
        self._client = DICOMwebClient(url=destination.url.rstrip("/"), session=session, headers=headers,
                                      timeout=timeout_seconds)
        self._client.set_http_retry_params(retry=False)  # the outbox retries, with its own backoff

    def store(self, dataset: Dataset) -> Delivery:
        """POST one instance to ``{url}/studies``."""
        uid = str(dataset.SOPInstanceUID)
        try:
            answer = self._client.store_instances([dataset])
        except requests.HTTPError as exc:
            return _http_failure(exc.response, uid)
        except (requests.ConnectionError, requests.Timeout) as exc:
            return Delivery(Outcome.NOT_REACHABLE, f"destination not reachable ({self.destination.url}: "
                                                   f"{type(exc).__name__})")
        except (requests.RequestException, ValueError) as exc:  # e.g. an answer in an unexpected media type
            return Delivery(Outcome.REFUSED, f"unexpected answer from {self.destination.url}: {exc}"[:300])
        return _from_response_module(answer.to_json_dict(), uid)


def _secret(destination: DestinationSettings, path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"destination {destination.name!r}: cannot read {path}: {exc.strerror or exc}") from None


def _http_failure(response: requests.Response | None, uid: str) -> Delivery:
    if response is None:
        return Delivery(Outcome.NOT_REACHABLE, "no HTTP answer")
    status = response.status_code
    if status >= 500 or status in _TRANSIENT_HTTP:
        return Delivery(Outcome.NOT_REACHABLE, f"HTTP {status} {response.reason}")
    try:
        module = response.json()
    except ValueError:
        module = None
    failed = _listed_failure(module, uid) if isinstance(module, dict) else None
    if failed is not None:  # a 409 Conflict says why in the Failed SOP Sequence
        return Delivery(failed.outcome, f"HTTP {status} {response.reason}, {failed.detail}")
    return Delivery(Outcome.REFUSED, f"HTTP {status} {response.reason}")


def _from_response_module(module: dict, uid: str) -> Delivery:
    """Read a success answer's Store Instances Response Module (DICOM JSON, PS3.18 F.2) for one instance."""
    return _listed_failure(module, uid) or Delivery(Outcome.STORED)


def _listed_failure(module: dict, uid: str) -> Delivery | None:
    for item in _items(module, _FAILED_SOP_SEQUENCE):
        if _value(item, _REFERENCED_SOP_INSTANCE_UID) == uid:
            reason = _value(item, _FAILURE_REASON)
            code = f"0x{reason:04X}" if isinstance(reason, int) else "unknown"
            out_of_resources = isinstance(reason, int) and 0xA700 <= reason <= 0xA7FF
            return Delivery(Outcome.NOT_REACHABLE if out_of_resources else Outcome.REFUSED, f"failure reason {code}")
    return None


def _items(module: dict, tag: str) -> list[dict]:
    return [item for item in (module.get(tag) or {}).get("Value", []) if isinstance(item, dict)]


def _value(item: dict, tag: str) -> object:
    values = (item.get(tag) or {}).get("Value") or [None]
    return values[0]
