"""Benchmark: seconds per study for radiomics on a full-size phantom (512 x 512, 0.78 mm, 1.25 mm slices).

Prints (never asserts): model-driven extraction of the 29 published features on
the 8 VOIs (T11-L2 x cortical/cancellous; target <= 20 s), and full ``che2025``
extraction (target <= 180 s for 8 VOIs). To stay inside the benchmark budget
the full profile runs on the two VOIs of T12 and the per-study figure is that
time x 4 (labelled as extrapolated); the other measurements run on all 8.
"""

from __future__ import annotations

import os
import time

import pytest

from inference.levels import TARGET_LEVELS, Compartment, verse_id
from inference.measure import measure_study
from inference.models import load_model
from inference.phantom import PhantomSpec, generate_phantom
from inference.radiomics import extract_features
from inference.results import SegmentationResult
from inference.segment.levels import describe_levels

pytestmark = pytest.mark.bench


@pytest.fixture(scope="module")
def full_size_study():
    spec = PhantomSpec(seed=11, top_level="T10", bottom_level="L3", shape=(512, 512, 160), pixel_spacing_mm=0.78,
                       slice_spacing_mm=1.25, slice_thickness_mm=1.25)
    phantom = generate_phantom(spec)
    seg = SegmentationResult(vertebrae=phantom.vertebrae, bodies=phantom.bodies, compartments=phantom.compartments,
                             levels=describe_levels(phantom.vertebrae, phantom.bodies).levels, backend="ground truth")
    return phantom, seg


def test_bench_measure_study(full_size_study, bench_report) -> None:
    phantom, seg = full_size_study
    model = load_model("che2025-published")
    started = time.perf_counter()
    plain = measure_study(phantom.image, seg, None)
    without_radiomics = time.perf_counter() - started
    started = time.perf_counter()
    scored = measure_study(phantom.image, seg, model)
    with_model = time.perf_counter() - started
    assert scored.score is not None and len(scored.score.levels_used) == 4 and plain.vbmd_mg_cm3 is not None
    bench_report("measure_study 512x512x160, 8 VOIs", cores=os.cpu_count(), seconds_without_radiomics=without_radiomics,
                 seconds_with_model=with_model, model_driven_radiomics_seconds=with_model - without_radiomics,
                 target_model_driven_s=20)


def test_bench_full_che2025(full_size_study, bench_report) -> None:
    phantom, seg = full_size_study
    body = seg.bodies == verse_id("T12")
    seconds, count = 0.0, 0
    for compartment in (Compartment.CORTICAL, Compartment.CANCELLOUS):
        mask = body & (seg.compartments == int(compartment))
        started = time.perf_counter()
        features = extract_features(phantom.image, mask, "che2025")
        seconds += time.perf_counter() - started
        count = len(features)
    bench_report("full che2025, T12 cortical + cancellous", features_per_voi=count, seconds_2_vois=seconds,
                 seconds_per_study_extrapolated_8_vois=seconds * len(TARGET_LEVELS), target_s=180)
