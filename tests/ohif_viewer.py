"""The prebuilt OHIF v3 viewer (npm ``@ohif/app``) served on loopback with Orthanc as its DICOMweb source.

``deploy/install.sh --test`` unpacks the pinned release's ``dist/`` into
``.cache/ohif-<version>/dist``. :func:`ohif_app` serves it as OHIF expects to
be deployed: static files with ``index.html`` for every client-side route, an
``app-config.js`` naming one DICOMweb data source, and that source at
``/dicom-web`` on the same origin, forwarded to Orthanc's DICOMweb plugin (the
same-origin proxy a hospital puts in front of its PACS, so the browser needs
no CORS).
"""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

PROJECT_ROOT = Path(__file__).resolve().parents[1]
OHIF_VERSION = "3.13.2"
OHIF_DIST = PROJECT_ROOT / ".cache" / f"ohif-{OHIF_VERSION}" / "dist"

APP_CONFIG = """
window.config = {
  routerBasename: null,
  extensions: [],
  modes: [],
  showStudyList: true,
  maxNumberOfWebWorkers: 2,
  showWarningMessageForCrossOrigin: false,
  showCPUFallbackMessage: false,
  showLoadingIndicator: true,
  strictZSpacingForVolumeViewport: true,
  showErrorDetails: 'always',
  defaultDataSourceName: 'orthanc',
  dataSources: [{
    namespace: '@ohif/extension-default.dataSourcesModule.dicomweb',
    sourceName: 'orthanc',
    configuration: {
      friendlyName: 'Orthanc (test PACS)',
      name: 'orthanc',
      wadoUriRoot: '/dicom-web',
      qidoRoot: '/dicom-web',
      wadoRoot: '/dicom-web',
      qidoSupportsIncludeField: false,
      imageRendering: 'wadors',
      thumbnailRendering: 'wadors',
      enableStudyLazyLoad: true,
      supportsFuzzyMatching: false,
      supportsWildcard: true,
      dicomUploadEnabled: false,
      bulkDataURI: { enabled: true },
      omitQuotationForMultipartRequest: true,
    },
  }],
};
"""
"""OHIF's configuration: one DICOMweb data source on the same origin."""

_FORWARDED_HEADERS = ("accept", "range")


def ohif_app(dicomweb_url: str, dist: Path = OHIF_DIST) -> Starlette:
    """OHIF's ``dist/`` with ``app-config.js`` and ``/dicom-web`` forwarded to ``dicomweb_url``."""
    dist = dist.resolve()

    def config(request: Request) -> Response:
        return Response(APP_CONFIG, media_type="application/javascript")

    def dicomweb(request: Request) -> Response:
        target = dicomweb_url.rstrip("/") + "/" + request.path_params["path"]
        if request.url.query:
            target += "?" + request.url.query
        forwarded = urllib.request.Request(target, headers={
            name: request.headers[name] for name in _FORWARDED_HEADERS if name in request.headers})
        try:
            with urllib.request.urlopen(forwarded, timeout=120) as answer:
                return Response(answer.read(), status_code=answer.status,
                                media_type=answer.headers.get("content-type"))
        except urllib.error.HTTPError as error:
            return Response(error.read(), status_code=error.code, media_type=error.headers.get("content-type"))

    def static(request: Request) -> Response:
        path = (dist / request.path_params["path"]).resolve()
        if path.is_file() and dist in path.parents:
            return FileResponse(path)
        return FileResponse(dist / "index.html")  # a client-side route such as /viewer

    return Starlette(routes=[
        Route("/app-config.js", config),
        Route("/dicom-web/{path:path}", dicomweb),
        Route("/{path:path}", static),
    ])
