"""Benchmark: a 512 x 512 x 300 CT through the U-Net backend on this machine's CPU.

Figures are printed (bench_report), never asserted. The CT is written to a
NIfTI file and a child process loads and segments it, so that the peak resident
memory reported is that of a study, not of pytest or of making the CT.

The network is the small test architecture (MONAI UNet, channels 4-8-16,
strides 2-2, one residual unit) run in 96^3 windows on a 1.5 mm grid, with
untrained weights: the network's time and memory do not depend on the weight
values, only on the architecture, window and grid. Only the backend is timed
(resample, window, sliding-window inference, post-processing, back to the input
grid); the compartment split and level description after it are shared by all
backends and benchmarked with the anatomical backend (an untrained network's
scattered labels would make them slower than on any real output). A real model (the ``segment-train`` default:
channels 16-32-64-128-256, two residual units, 96^3 patches) costs far more
per window; it is meant for a GPU, where ``[pipeline] device = "auto"`` puts it.
No GPU was available where this benchmark was written, so only CPU figures exist.
"""

from __future__ import annotations

import json
import resource
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from inference.segment.unet.network import build_network
from inference.segment.unet.spec import Architecture, ModelSpec, write_spec
from tests.bench.child import measure_in_child

CT_SIZE = (512, 512, 300)
CT_SPACING = (0.8, 0.8, 1.0)
SMALL_TEST_MODEL = ModelSpec(
    name="bench-small",
    labels=(18, 19, 20, 21),
    spacing_mm=(1.5, 1.5, 1.5),
    patch_size=(96, 96, 96),
    architecture=Architecture(channels=(4, 8, 16), strides=(2, 2), num_res_units=1),
)


def synthetic_ct() -> sitk.Image:
    """A 512 x 512 x 300 CT in HU: an elliptic torso of soft tissue with a column of bone, plus noise."""
    rng = np.random.default_rng(0)
    columns, rows, slices = CT_SIZE
    yy, xx = np.mgrid[:rows, :columns]
    torso = ((xx - columns / 2) / 220) ** 2 + ((yy - rows / 2) / 160) ** 2 <= 1
    hu = rng.standard_normal((slices, rows, columns), dtype=np.float32)
    hu *= 12
    hu[:, torso] += 1040
    hu[:, 300:340, 236:276] += 210  # where the vertebral bodies are
    hu -= 1000
    image = sitk.GetImageFromArray(hu)
    image.SetSpacing(CT_SPACING)
    return image


def measure_study(ct_path: str, model_dir: str, device: str) -> None:
    """Child process: load the CT, run the backend, print seconds and peak memory as JSON."""
    from inference.segment.unet import segment_unet
    from inference.volume import load_volume

    image = load_volume(ct_path)
    before_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    segment_unet(image, device=device, model_dir=Path(model_dir))
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_mb": peak_mb, "before_mb": before_mb}))


@pytest.mark.bench
@pytest.mark.parametrize("device", [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")),
])
def test_unet_backend_512x512x300(tmp_path, bench_report, device):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    torch.save(build_network(SMALL_TEST_MODEL).state_dict(), model_dir / SMALL_TEST_MODEL.weights)
    write_spec(model_dir, SMALL_TEST_MODEL)
    ct_path = tmp_path / "ct.nii"
    sitk.WriteImage(synthetic_ct(), str(ct_path))
    figures = measure_in_child("tests.bench.test_bench_segment_unet:measure_study", str(ct_path), str(model_dir),
                               device, timeout=600)
    bench_report(
        f"unet backend, 512x512x300 CT (0.8x0.8x1.0 mm), {device}, small test architecture, 1.5 mm grid, 96^3 windows",
        seconds=figures["seconds"],
        peak_rss_mb=figures["peak_mb"],
        rss_after_loading_ct_mb=figures["before_mb"],
        input_ct_mb=512 * 512 * 300 * 4 / 2**20,
        cpu_threads=torch.get_num_threads(),
        gpu=torch.cuda.get_device_name() if torch.cuda.is_available() else "none",
    )
