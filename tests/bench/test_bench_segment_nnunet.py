"""Benchmark: a 512 x 512 x 300 CT through the nnunet backend (nnU-Net v2's own predictor).

Figures are printed (bench_report), never asserted. The CT is written to a
NIfTI file and a child process loads and segments it, so that the peak resident
memory reported is that of a study, not of pytest or of making the CT.

The model is the tiny test folder of tests/nnunet_model.py (PlainConvUNet, two
stages of 4 and 8 features, 32^3 patches, weights from a fixed seed: time and
memory depend on the architecture, patch and grid, not on the weight values),
once at its own 4 mm grid and once at 1.5 mm, the grid of TotalSegmentator's
full-resolution models, to show what the grid costs around the network:
resampling onto the model grid, nnU-Net's preprocessing and sliding window, the
labels back onto the input grid, the bodies. A real TotalSegmentator network
(six stages, 32-320 features, 128^3 patches) costs far more per window; it is
meant for a GPU, where ``[pipeline] device = "auto"`` puts it.
"""

from __future__ import annotations

import json
import resource
import time
from pathlib import Path

import pytest
import SimpleITK as sitk
import torch

from tests.bench.child import measure_in_child
from tests.bench.scale import FULL
from tests.bench.test_bench_segment_unet import synthetic_ct
from tests.nnunet_model import write_tiny_model



def measure_study(ct_path: str, model_dir: str, device: str) -> None:
    """Child process: load the CT, run the backend, print seconds and peak memory as JSON."""
    from inference.segment.nnunet import load_nnunet, segment_nnunet
    from inference.volume import load_volume

    image = load_volume(ct_path)
    started = time.perf_counter()
    load_nnunet(Path(model_dir), device)
    loading = time.perf_counter() - started
    before_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    segment_nnunet(image, device=device, model_dir=Path(model_dir))
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    gpu_mb = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else 0.0
    print(json.dumps({"seconds": seconds, "loading_seconds": loading, "peak_mb": peak_mb, "before_mb": before_mb,
                      "gpu_peak_mb": gpu_mb}))


@pytest.mark.bench
@pytest.mark.parametrize("spacing_mm", [4.0, 1.5] if FULL else [4.0])  # 1.5 mm: 80 s on 2 cores
@pytest.mark.parametrize("device", [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")),
])
def test_nnunet_backend_512x512x300(tmp_path, bench_report, device, spacing_mm):
    model_dir = write_tiny_model(tmp_path, spacing_mm=spacing_mm)
    ct_path = tmp_path / "ct.nii"
    sitk.WriteImage(synthetic_ct(), str(ct_path))
    figures = measure_in_child("tests.bench.test_bench_segment_nnunet:measure_study", str(ct_path),
                               str(model_dir), device, timeout=900)
    bench_report(
        f"nnunet backend, 512x512x300 CT (0.8x0.8x1.0 mm), {device}, tiny nnU-Net (PlainConvUNet 4-8, 32^3 "
        f"patches), {spacing_mm} mm grid",
        seconds=figures["seconds"],
        model_loading_seconds=figures["loading_seconds"],
        peak_rss_mb=figures["peak_mb"],
        rss_after_loading_ct_and_model_mb=figures["before_mb"],
        gpu_peak_mb=figures["gpu_peak_mb"],
        cpu_threads=torch.get_num_threads(),
        gpu=torch.cuda.get_device_name() if torch.cuda.is_available() else "none",
    )
