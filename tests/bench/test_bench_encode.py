"""Seconds to encode SEG + TID 1500 SR + visual report for a 512 x 512 x 300 CT study.

Wall-clock seconds depend on what else runs on the machine; ``cpu_seconds``
(this process's CPU time) shows the work itself.
"""

from __future__ import annotations

import time

import pytest

from dicom_sr import AlgorithmInfo, encode_seg, encode_sr, encode_visual_report
from tests.unit.test_dicom_sr_inputs import make_ct_image, make_measurements, make_segmentation, write_ct_datasets

pytestmark = pytest.mark.bench


def test_encode_512x512x300(bench_report) -> None:
    # an abdominal CT: 0.78 mm pixels, 1 mm slices; adult T11-L2 bodies (45 x 35 x 27 mm)
    ct, bodies, compartments = make_ct_image((300, 512, 512), spacing=(0.78, 0.78, 1.0), body_mm=(45.0, 35.0, 27.0))
    source, segmentation = write_ct_datasets(ct), make_segmentation(bodies, compartments)
    measurements = make_measurements()
    algorithm = AlgorithmInfo(name="scpnode anatomical", version="bench", model_id="bench")
    start, cpu_start = time.perf_counter(), time.process_time()
    seg = encode_seg(source, segmentation, algorithm)
    after_seg = time.perf_counter()
    sr = encode_sr(source, seg, segmentation, measurements, algorithm)
    after_sr = time.perf_counter()
    report = encode_visual_report(source, segmentation, measurements, algorithm)
    end, cpu_end = time.perf_counter(), time.process_time()
    assert seg.NumberOfFrames > 0 and sr.SOPInstanceUID and report.SOPInstanceUID
    bench_report(
        "encode SEG+SR+report, 512x512x300",
        seconds=end - start, cpu_seconds=cpu_end - cpu_start, seg_s=after_seg - start, sr_s=after_sr - after_seg, report_s=end - after_sr,
        seg_frames=int(seg.NumberOfFrames), slices_outlined=len(sr.CurrentRequestedProcedureEvidenceSequence[0]
                                                                .ReferencedSeriesSequence[0].ReferencedSOPSequence),
    )
