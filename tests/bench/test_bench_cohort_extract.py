"""Benchmark: ``cohort extract`` throughput per profile on this machine (studies per hour).

Prints (never asserts) for a routine-sized phantom cohort (512 x 512 matrix, 0.78 mm pixels,
1.25 mm slices, T10-L3 in view, masks given), two studies, two worker processes:

- model-driven: the 29 features of the published T11-L2 model on its 8 VOIs (target <= 20 s per study);
- ``yu2025``: the 107 features of the whole body, L1-L3;
- ``lumbar1197``: the 1,197 features of the whole body, L1-L3 (whole-image clipping included).

The per-study figure is wall time x workers / studies (the CPU time one study costs).
"""

from __future__ import annotations

import os
import time

import pandas as pd
import pytest

from inference.cohort.extract import ExtractionPlan, extract_cohort
from inference.cohort.table import read_cohort_table
from inference.models import load_model
from inference.phantom.cohort import generate_cohort

pytestmark = pytest.mark.bench

STUDIES, WORKERS = 2, 2


@pytest.fixture(scope="module")
def cohort_rows(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench_extract")
    cohort = generate_cohort(STUDIES, root, seed=8, shape=(512, 512, 176), field_of_view_mm=(400.0, 220.0))
    labels = pd.read_csv(cohort.labels)
    pd.DataFrame({"study_id": labels.patient_id, "image": labels.image_path, "mask": labels.mask_path,
                  "vertebrae": labels.vertebrae_path, "label": labels.outcome}).to_csv(root / "cohort.csv", index=False)
    return read_cohort_table(root / "cohort.csv"), root


def _plans() -> dict[str, ExtractionPlan]:
    model = load_model("che2025-published")
    lumbar = ("L1", "L2", "L3")
    return {"model-driven (29 features, 8 VOIs)": ExtractionPlan(profile=model.profile, features=dict(model.features)),
            "yu2025 (107 features, body, L1-L3)": ExtractionPlan(profile="yu2025", vois=("body",), levels=lumbar),
            "lumbar1197 (1,197 features, body, L1-L3)": ExtractionPlan(profile="lumbar1197", vois=("body",),
                                                                       levels=lumbar)}


@pytest.mark.parametrize("name", list(_plans()))
def test_bench_cohort_extract(cohort_rows, name, bench_report) -> None:
    rows, root = cohort_rows
    started = time.perf_counter()
    result = extract_cohort(rows, root / name.split()[0], _plans()[name], workers=WORKERS, progress=False)
    seconds = time.perf_counter() - started
    assert result.done == STUDIES, result.failures
    per_study = seconds * WORKERS / STUDIES
    bench_report(f"cohort extract {name}", cores=os.cpu_count(), workers=WORKERS, studies=STUDIES,
                 wall_seconds=round(seconds, 1), cpu_seconds_per_study=round(per_study, 1),
                 studies_per_hour=round(3600 * STUDIES / seconds))
