"""The coordinator's browser UI: worklist, study detail, review actions and node status.

``create_app(settings, db)`` builds the Starlette application; ``WebServer``
runs it with uvicorn in a thread for ``scpnode serve``.
"""

from scpnode.web.app import create_app
from scpnode.web.node_status import DatabaseNodeStatus, NodeStatus, NodeStatusProvider
from scpnode.web.server import WebServer, WebServerError

__all__ = ["DatabaseNodeStatus", "NodeStatus", "NodeStatusProvider", "WebServer", "WebServerError", "create_app"]
