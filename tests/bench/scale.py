"""How much each benchmark measures: the CI size by default, the full set with ``SCPNODE_BENCH_FULL=1``.

The suite runs every benchmark on each CI run and must stay within its time budget on 2 cores;
the full set adds the slow variants (a 1.5 mm nnU-Net grid, series sent to Dask workers as bytes)
and more studies and rounds, for the figures quoted in the README.
"""

from __future__ import annotations

import os

FULL = os.environ.get("SCPNODE_BENCH_FULL", "") == "1"


def studies(ci: int, full: int) -> int:
    """The number of studies a throughput benchmark queues (``SCPNODE_BENCH_STUDIES`` overrides)."""
    return int(os.environ.get("SCPNODE_BENCH_STUDIES", full if FULL else ci))
