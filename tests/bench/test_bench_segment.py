"""Benchmark: seconds and peak memory of the anatomical backend on a 512 x 512 x 300 CT at 1 mm.

The study is the real abdominal CT (../shared/data/real_ct/abdomen_3mm) resampled
to a full clinical matrix (0.72 mm pixels, 1 mm slices), so the anatomy the
backend works through is real. It runs in a child process so that the peak
resident memory (ru_maxrss) is that of one segmentation, not of the test run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

CHILD = r"""
import json, resource, sys, time, tracemalloc
import numpy as np
import SimpleITK as sitk
from inference.segment import segment_volume
from inference.volume import load_volume

source = load_volume(sys.argv[1])
spacing = (0.72, 0.72, 1.0)
size = (512, 512, 300)
extent = np.asarray(source.GetSize()) * np.asarray(source.GetSpacing())
# 300 slices cover 300 of the 336 mm: keep the top (T12-L2), drop the lowest pelvis
centre = np.asarray(source.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in source.GetSize()]))
centre[2] += (extent[2] - size[2] * spacing[2]) / 2
direction = np.asarray(source.GetDirection()).reshape(3, 3)
origin = np.asarray(centre) - direction @ (np.asarray(spacing) * (np.asarray(size) - 1) / 2)
image = sitk.Resample(source, size, sitk.Transform(), sitk.sitkLinear, tuple(origin), spacing,
                      source.GetDirection(), -1024.0, sitk.sitkFloat32)
tracemalloc.start()
started = time.perf_counter()
result = segment_volume(image)
seconds = time.perf_counter() - started
_, traced_peak = tracemalloc.get_traced_memory()
reference = sitk.Resample(sitk.ReadImage(sys.argv[2]), image, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
truth, labels = sitk.GetArrayFromImage(reference), sitk.GetArrayFromImage(result.vertebrae)
right = []
for name, label in (("T12", 19), ("L1", 20), ("L2", 21)):
    values, counts = np.unique(labels[truth == label], return_counts=True)
    if counts.size and values[np.argmax(counts)] == label:
        right.append(name)
print(json.dumps({
    "right": right,
    "seconds": round(seconds, 1),
    "tracemalloc_peak_mb": round(traced_peak / 2**20),
    "ru_maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    "complete": result.complete_levels(("T11", "T12", "L1", "L2")),
}))
"""


@pytest.mark.bench
def test_anatomical_backend_on_a_full_size_ct(shared_data: Path, bench_report):
    folder = shared_data / "real_ct" / "abdomen_3mm"
    completed = subprocess.run([sys.executable, "-c", CHILD, str(folder / "ct.nii.gz"),
                                str(folder / "reference_vertebrae.nii.gz")],
                               capture_output=True, text=True, timeout=300, check=True)
    figures = json.loads(completed.stdout.strip().splitlines()[-1])
    bench_report("segment 512x512x300 at 1 mm, anatomical backend, CPU",
                 seconds=figures["seconds"], peak_rss_mb=figures["ru_maxrss_mb"],
                 tracemalloc_peak_mb=figures["tracemalloc_peak_mb"],
                 complete_levels=",".join(figures["complete"]) or "none")
    assert figures["complete"], "the resampled study should still show complete target levels"
    assert figures["right"] == ["T12", "L1", "L2"], "levels against the resampled reference"
