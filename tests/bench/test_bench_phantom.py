"""Benchmark: generating and writing one 512 x 512 x 300 phantom study (figures printed, never asserted)."""

from __future__ import annotations

import resource
import time

import pytest

from inference.phantom import abdominal_ct, generate_phantom, write_phantom_study

pytestmark = pytest.mark.bench


def test_generate_full_size_study(tmp_path, bench_report):
    spec = abdominal_ct(seed=1, shape=(512, 512, 300))
    start = time.perf_counter()
    phantom = generate_phantom(spec)
    generated = time.perf_counter() - start
    start = time.perf_counter()
    write_phantom_study(phantom, tmp_path / "study")
    written = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    bench_report("phantom 512x512x300 abdominal", generate_s=generated, write_dicom_nifti_s=written,
                 peak_rss_mb=round(peak_mb))
