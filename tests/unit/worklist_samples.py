"""Scored studies for the worklist and web UI tests (not collected: no tests here).

Measurements are built from the real result dataclasses; the sagittal overlay
is drawn with Pillow (the real one comes from :mod:`dicom_sr` in the pipeline).
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

from PIL import Image, ImageDraw

from inference.levels import TARGET_LEVELS, verse_id
from inference.results import CompartmentStats, Heights, LevelMeasurement, StudyMeasurements, StudyScore
from scpnode.config import WorklistSettings
from scpnode.worklist import StudyInfo, add_scored_study


def measurements(l1_hu: float, vbmd: float, genant: int = 0, risk: tuple[float, str] | None = None,
                 radscore: float = -0.4) -> StudyMeasurements:
    """A four-level study; ``risk`` = (probability, category) from a calibrated model, None: uncalibrated."""
    levels = {}
    for offset, name in enumerate(TARGET_LEVELS):
        hu = l1_hu + 6 * (offset - 2)
        stats = CompartmentStats(voxels=9000, volume_ml=9.0, mean_hu=hu, median_hu=hu, sd_hu=30.0)
        levels[name] = LevelMeasurement(
            name=name, verse_id=verse_id(name), complete=True,
            cortical=CompartmentStats(voxels=4000, volume_ml=4.0, mean_hu=hu + 250, median_hu=hu + 250, sd_hu=80.0),
            cancellous=stats, body=stats, vbmd_mg_cm3=vbmd + 2 * offset,
            heights=Heights(24.0, 23.5, 25.0, 0.96, 0.94, 1.0),
            genant_grade=genant if name == "L1" else 0,
            radscores={"cortical": radscore - 0.1, "cancellous": radscore + 0.1},
        )
    category = "osteoporosis" if vbmd < 80 else "low" if vbmd <= 120 else "normal"
    hu_category = "osteoporosis likely" if l1_hu < 110 else "indeterminate" if l1_hu <= 160 else "normal likely"
    score = StudyScore(
        model_id="che2025-published" if risk is None else "site-2026a", model_version="1",
        calibrated=risk is not None, radscores={"cortical": radscore, "cancellous": radscore, "vertebral": radscore},
        probability=risk[0] if risk else None, category=risk[1] if risk else None,
        levels_used=list(TARGET_LEVELS),
    )
    return StudyMeasurements(levels=levels, l1_attenuation_hu=l1_hu, l1_attenuation_category=hu_category,
                             vbmd_mg_cm3=vbmd + 3, vbmd_category=category, max_genant_grade=genant, score=score)


def draw_overlay(path: Path) -> Path:
    """A sagittal-looking PNG: grey body, four coloured vertebral bodies labelled T11-L2."""
    image = Image.new("RGB", (320, 420), (20, 20, 20))
    draw = ImageDraw.Draw(image)
    draw.rectangle((60, 0, 260, 420), fill=(70, 70, 70))
    colours = [(230, 80, 80), (80, 200, 90), (80, 130, 240), (230, 200, 60)]
    for index, (name, colour) in enumerate(zip(TARGET_LEVELS, colours)):
        top = 30 + index * 95
        draw.rectangle((110, top, 200, top + 70), outline=colour, width=5, fill=(150, 150, 150))
        draw.rectangle((125, top + 12, 185, top + 58), fill=tuple(c // 2 + 60 for c in colour))
        draw.text((215, top + 28), name, fill=colour)
    image.save(path)
    return path


def add_study(db, index: int, *, l1_hu: float = 180.0, vbmd: float = 150.0, genant: int = 0,
              risk: tuple[float, str] | None = None, overlay: Path | None = None,
              settings: WorklistSettings | None = None, study_date: date | None = None) -> int:
    """Add study number ``index`` (patient PAT{index:05d}, accession ACC{index:05d}) and return its row id."""
    info = StudyInfo(
        study_uid=f"1.2.826.0.1.3680043.10.1{index:05d}", series_uid=f"1.2.826.0.1.3680043.10.2{index:05d}",
        patient_id=f"PAT{index:05d}", patient_name=f"Test^Patient{index}", accession_number=f"ACC{index:05d}",
        study_date=study_date or date(2026, 1, 1) + timedelta(days=index % 300),
        study_description="CT ABDOMEN", overlay_path=str(overlay) if overlay else "",
    )
    return add_scored_study(db, info, measurements(l1_hu, vbmd, genant, risk), settings or WorklistSettings())
