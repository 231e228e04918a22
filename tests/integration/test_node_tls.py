"""DICOM TLS (PS3.15 B.1): a real TLS association with certificates from a throwaway CA."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from pydicom.uid import generate_uid
from pynetdicom import AE

from scpnode.delivery import outbox
from scpnode.node import Node
from scpnode.storage.index import find_instance
from tests.integration.node_helpers import CT_IMAGE_STORAGE, ct_slice, node_settings, wait_for

pytestmark = pytest.mark.integration


def tls_settings(pki: Path) -> dict:
    return {"enabled": True, "cert_file": str(pki / "server.pem"), "key_file": str(pki / "server.key"),
            "ca_file": str(pki / "ca.pem"), "require_client_cert": True}


def client_context(pki: Path, with_certificate: bool = True) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(pki / "ca.pem"))
    context.check_hostname = False
    if with_certificate:
        context.load_cert_chain(str(pki / "client.pem"), str(pki / "client.key"))
    return context


def test_tls_association_stores_and_plain_or_anonymous_clients_are_refused(tmp_path, pki):
    with Node(node_settings(tmp_path / "node", tls=tls_settings(pki))) as node:
        ae = AE(ae_title="PYSCU")
        ae.add_requested_context("1.2.840.10008.1.1")
        ae.add_requested_context(CT_IMAGE_STORAGE)
        assoc = ae.associate("127.0.0.1", node.port, ae_title="SCPNODE", tls_args=(client_context(pki), None))
        assert assoc.is_established
        assert assoc.send_c_echo().Status == 0x0000
        ds = ct_slice(generate_uid(), generate_uid(), 0)
        assert assoc.send_c_store(ds).Status == 0x0000
        assoc.release()
        assert find_instance(node.database(), ds.SOPInstanceUID) is not None

        plain = ae.associate("127.0.0.1", node.port, ae_title="SCPNODE")
        assert not plain.is_established
        anonymous = ae.associate("127.0.0.1", node.port, ae_title="SCPNODE",
                                 tls_args=(client_context(pki, with_certificate=False), None))
        assert not anonymous.is_established


def test_outbox_sends_over_tls_to_a_tls_destination(tmp_path, pki):
    receiving = node_settings(tmp_path / "receiving", tls=tls_settings(pki),
                              peers=[{"ae_title": "SENDING", "host": "127.0.0.1"}])
    with Node(receiving) as destination:
        # the sending node presents the client certificate; it trusts the same CA
        sending = node_settings(tmp_path / "sending", node={"ae_title": "SENDING"},
                                tls={**tls_settings(pki), "cert_file": str(pki / "client.pem"),
                                     "key_file": str(pki / "client.key")},
                                destinations=[{"name": "pacs", "ae_title": "SCPNODE", "host": "127.0.0.1",
                                               "port": destination.port, "tls": True}])
        with Node(sending, sender_options={"poll_seconds": 0.2}) as node:
            ds = ct_slice(generate_uid(), generate_uid(), 0)
            outbox.enqueue(node.database(), ds, "pacs")
            node.sender.wake()
            wait_for(lambda: outbox.items(node.database(), outbox.OutboxState.SENT), timeout=30)
        assert find_instance(destination.database(), ds.SOPInstanceUID) is not None
