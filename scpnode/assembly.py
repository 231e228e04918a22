"""The whole node as ``scpnode serve`` runs it: DICOM node + inference pipeline + web UI."""

from __future__ import annotations

from scpnode.config import Settings
from scpnode.db import ThreadDatabases
from scpnode.node import Node
from scpnode.pipeline.service import InferencePipeline
from scpnode.web.app import create_app
from scpnode.web.server import WebServer


def assemble_node(settings: Settings, *, web: bool | None = None, poll_seconds: float = 1.0,
                  sender_options: dict | None = None) -> Node:
    """Build the node with the pipeline (and the web UI unless ``web`` or ``[web] enabled`` say no).

    Selected series go to the pipeline through the node's hook; the pipeline
    and the web UI are node services, started after the receiver and stopped
    before it.
    """
    pipeline = InferencePipeline(settings, poll_seconds=poll_seconds)
    services: list = [pipeline]
    if settings.web.enabled if web is None else web:
        app = create_app(settings, ThreadDatabases(settings.node.database))
        services.append(WebServer(app, settings.web.host, settings.web.port, settings.web.trusted_proxies))
    return Node(settings, on_series_selected=pipeline.on_series_selected, services=services,
                sender_options=sender_options)
