"""``scpnode phantom``: write a synthetic CT study (DICOM + NIfTI + truth) or a synthetic cohort to a folder."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, RLELossless

from inference.phantom import abdominal_ct, chest_ct, generate_phantom, neck_ct, write_phantom_study
from inference.phantom.cohort import generate_cohort
from scpnode.errors import UsageError
from scpnode.logs import log_event, uid_ref

PRESETS = {"abdominal": abdominal_ct, "chest": chest_ct, "neck": neck_ct}
TRANSFER_SYNTAXES = {"explicit": ExplicitVRLittleEndian, "jpeg2000": JPEG2000Lossless, "rle": RLELossless}
logger = logging.getLogger("scpnode.phantom")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "phantom", help="write a synthetic CT study or cohort with ground truth to a folder",
        description="Write a synthetic thoracolumbar CT study (DICOM series, NIfTI image and labels, truth.json) "
                    "or, with --cohort N, a synthetic cohort with labels.csv.")
    parser.add_argument("out", metavar="DIR", help="output folder")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="abdominal",
                        help="field of view: abdominal (T10-S1), chest (T3-L2) or neck (C3-T2); default abdominal")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same study)")
    parser.add_argument("--shape", type=int, nargs=3, metavar=("X", "Y", "Z"),
                        help="matrix columns rows slices (default 512 512 300; 160 160 88 for a cohort)")
    parser.add_argument("--vbmd", type=float, help="cancellous vBMD in mg/cm3")
    parser.add_argument("--heterogeneity", type=float, help="trabecular heterogeneity 0-1")
    parser.add_argument("--noise", type=float, help="image noise, HU standard deviation")
    parser.add_argument("--fracture", action="append", default=[], metavar="LEVEL:GRADE:TYPE",
                        help="e.g. L1:2:wedge (Genant grade 1-3; wedge, biconcave or crush); repeatable")
    parser.add_argument("--position", choices=("HFS", "FFS"), help="patient position (default HFS)")
    parser.add_argument("--rib-pairs", type=int, choices=(11, 12, 13), help="number of rib pairs (default 12)")
    parser.add_argument("--lumbar-rib", action="store_true", help="add a pair of short ribs on L1")
    parser.add_argument("--contrast", action="store_true", help="portal-venous contrast")
    parser.add_argument("--arterial", action="store_true",
                        help="arterial-phase contrast (aorta and heart brighter than bone); implies --contrast")
    parser.add_argument("--levels", nargs=2, metavar=("TOP", "BOTTOM"),
                        help="first and last vertebra of the field of view, e.g. C5 L3 (overrides the preset's)")
    parser.add_argument("--kyphosis", type=float, help="sagittal curve factor (1 typical, 1.6 marked)")
    parser.add_argument("--scoliosis", type=float, metavar="DEG", help="Cobb angle of a thoracolumbar curve")
    parser.add_argument("--arms-down", action="store_true", help="arms beside the trunk")
    parser.add_argument("--build", type=float, metavar="SCALE", help="patient build, 0.6-1.6 (1 average)")
    parser.add_argument("--sacralized-l5", action="store_true", help="a lumbosacral transitional vertebra")
    parser.add_argument("--transfer-syntax", choices=sorted(TRANSFER_SYNTAXES), default="explicit",
                        help="DICOM transfer syntax (default explicit VR little endian)")
    parser.add_argument("--no-dicom", action="store_true", help="write NIfTI and truth only")
    parser.add_argument("--cohort", type=int, metavar="N", help="write a cohort of N patients instead of one study")
    parser.add_argument("--dicom", action="store_true", help="with --cohort: also write DICOM series")
    parser.add_argument("--fracture-types", nargs="+", choices=("wedge", "biconcave", "crush"), default=(),
                        metavar="TYPE", help="with --cohort: an L1 fracture of these types in turn (grade 1-3), "
                                             "named in labels.csv's fracture_type (wedge, biconcave, crush)")
    parser.set_defaults(run=run)


def _fractures(values: list[str]) -> dict[str, tuple[int, str]]:
    fractures = {}
    for value in values:
        try:
            level, grade, kind = value.split(":")
            fractures[level] = (int(grade), kind)
        except ValueError:
            raise UsageError(f"--fracture {value!r}: expected LEVEL:GRADE:TYPE, e.g. L1:2:wedge") from None
    return fractures


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if args.cohort is not None:
        shape = tuple(args.shape) if args.shape else (160, 160, 88)
        try:
            cohort = generate_cohort(args.cohort, out, args.seed, shape=shape, dicom=args.dicom,
                                     fracture_types=tuple(args.fracture_types))
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        cases = sum(member.outcome for member in cohort.members)
        log_event(logger, "phantom_cohort_written", patients=len(cohort.members), fractures=cases)
        print(f"wrote {len(cohort.members)} patients ({cases} with a fracture outcome) and {cohort.labels}")
        return 0
    overrides = {key: value for key, value in (
        ("vbmd_mg_cm3", args.vbmd), ("trabecular_heterogeneity", args.heterogeneity), ("noise_hu", args.noise),
        ("patient_position", args.position), ("rib_pairs", args.rib_pairs), ("kyphosis", args.kyphosis),
        ("scoliosis_deg", args.scoliosis), ("body_scale", args.build)) if value is not None}
    overrides.update(fractures=_fractures(args.fracture), lumbar_rib=args.lumbar_rib,
                     contrast=args.contrast or args.arterial, contrast_phase="arterial" if args.arterial else "portal",
                     arms_down=args.arms_down, transition="sacralized-L5" if args.sacralized_l5 else "none")
    if args.levels:
        overrides["top_level"], overrides["bottom_level"] = args.levels
    if args.shape:
        overrides["shape"] = tuple(args.shape)
    try:
        spec = PRESETS[args.preset](args.seed, **overrides)
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    study = write_phantom_study(generate_phantom(spec), out, dicom=not args.no_dicom,
                                transfer_syntax=TRANSFER_SYNTAXES[args.transfer_syntax])
    if study.series is not None:
        log_event(logger, "phantom_study_written", study=uid_ref(study.series.study.study_uid),
                  series=uid_ref(study.series.series.series_uid), slices=len(study.series.files))
        print(f"wrote {len(study.series.files)} DICOM slices to {study.dicom_folder}")
    print(f"wrote {study.ct}, {study.vertebrae.name}, {study.compartments.name} and {study.truth.name} in {out}")
    return 0
