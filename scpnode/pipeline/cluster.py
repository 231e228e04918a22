"""Connecting to the Dask cluster of ``[pipeline] scheduler_address``, with TLS where it says so."""

from __future__ import annotations

from distributed import Client
from distributed.security import Security

from scpnode.config import PipelineSettings

CONNECT_TIMEOUT_SECONDS = 10.0


def cluster_security(pipeline: PipelineSettings, address: str) -> Security | None:
    """Mutual TLS with the ``scheduler_tls_*`` files for a tls:// address, else None (plain TCP).

    Raises:
        ValueError: a tls:// address without the files in the configuration.
    """
    if not address.startswith("tls://"):
        return None
    files = (pipeline.scheduler_tls_ca_file, pipeline.scheduler_tls_cert_file, pipeline.scheduler_tls_key_file)
    if None in files:
        raise ValueError(f"{address}: a tls:// scheduler needs [pipeline] scheduler_tls_ca_file, "
                         "scheduler_tls_cert_file and scheduler_tls_key_file")
    ca, cert, key = map(str, files)
    return Security(tls_ca_file=ca, tls_client_cert=cert, tls_client_key=key, require_encryption=True)


def connect(pipeline: PipelineSettings, address: str | None = None,
            timeout: float = CONNECT_TIMEOUT_SECONDS) -> Client:
    """A client of the scheduler at ``address`` (default ``[pipeline] scheduler_address``).

    ``timeout`` bounds the first connection and each reconnection after the
    scheduler was lost; past it the client closes itself.

    Raises:
        OSError, TimeoutError: the scheduler cannot be reached.
        ValueError: a tls:// address without the TLS files.
    """
    address = address or pipeline.scheduler_address
    return Client(address, security=cluster_security(pipeline, address), timeout=timeout, set_as_default=False)
