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


def test_bench_deep_resnet50(full_size_study, tmp_path, bench_report) -> None:
    """Deep transfer features (ResNet50, largest slice at 64 x 64) on the 8 VOIs of T11-L2, random weights."""
    import torch
    from monai.networks.nets import resnet50

    from inference.radiomics.deep import default_device, deep_features, load_resnet50

    phantom, seg = full_size_study
    torch.manual_seed(0)
    network = resnet50(spatial_dims=2, n_input_channels=3, conv1_t_size=7, conv1_t_stride=2, shortcut_type="B")
    torch.save({k: v for k, v in network.state_dict().items() if not k.startswith("fc.")}, tmp_path / "w.pth")
    device = default_device()
    started = time.perf_counter()
    model = load_resnet50(tmp_path / "w.pth", device=device)
    loading = time.perf_counter() - started
    started = time.perf_counter()
    for level in TARGET_LEVELS:
        body = seg.bodies == verse_id(level)
        for compartment in (Compartment.CORTICAL, Compartment.CANCELLOUS):
            assert len(deep_features(phantom.image, body & (seg.compartments == int(compartment)), model)) == 2048
    seconds = time.perf_counter() - started
    bench_report("deep features resnet50, 8 VOIs", device=device, cores=os.cpu_count(), load_s=loading,
                 seconds_per_voi=seconds / 8)
