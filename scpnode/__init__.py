"""The screening node: networking, storage, scheduling, worklist and web UI.

Everything that has a network, a database, a clock or a disk layout lives
here; the science is in :mod:`inference` and the DICOM encoders in
:mod:`dicom_sr`, neither of which imports this package.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("scpnode")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"
