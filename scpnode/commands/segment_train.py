"""``scpnode segment-train``: train the U-Net segmentation backend from NIfTI cases.

Cases are CT images with whole-vertebra masks (VerSe ids) and vertebral-body
masks, either in three folders matched by name (VerSe/BIDS names such as
``sub-verse004_ct.nii.gz`` / ``sub-verse004_seg-vert_msk.nii.gz``) or listed in
a cohort CSV. Writes a model directory that ``[pipeline] segmentation_model_dir``
(with ``segmentation_backend = "unet"``) points the node at. See README,
"Training the U-Net segmentation backend".
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from pydantic import ValidationError

from inference.levels import verse_id
from scpnode.errors import UsageError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "segment-train",
        help="train the U-Net segmentation backend from NIfTI image/label pairs (VerSe convention)",
        description="Train the U-Net segmentation backend from NIfTI image/label pairs in the VerSe "
                    "convention; writes a model directory (model.json, model.pt = best epoch, last.pt).",
    )
    data = parser.add_argument_group("training data (three folders, or --cohort)")
    data.add_argument("--images", type=Path, metavar="DIR", help="CT images (.nii.gz, HU)")
    data.add_argument("--labels", type=Path, metavar="DIR", help="whole-vertebra masks, VerSe ids")
    data.add_argument("--bodies", type=Path, metavar="DIR",
                      help="vertebral-body masks (any non-zero voxel, or --body-values)")
    data.add_argument("--cohort", type=Path, metavar="CSV",
                      help="CSV with columns image, vertebrae, bodies[, split=train|val], paths relative to it")
    data.add_argument("--body-values", type=_ints, metavar="V,V",
                      help="mask values that mean vertebral body, e.g. 49,50 for VerSe sub-region masks")
    data.add_argument("--val-fraction", type=float, default=0.2,
                      help="share of cases held out for validation when not given by the CSV (default 0.2)")
    parser.add_argument("--out", type=Path, required=True, metavar="MODEL_DIR", help="model directory to write")
    parser.add_argument("--resume", action="store_true", help="continue the run saved in MODEL_DIR (last.pt)")
    model = parser.add_argument_group("model (ignored with --resume)")
    model.add_argument("--name", default="site-unet", help="model name recorded in results (default site-unet)")
    model.add_argument("--levels", type=_levels, metavar="T11,T12,...",
                       help="levels the model learns (default: every level in the training masks)")
    model.add_argument("--spacing", type=_triple(float), default=(1.5, 1.5, 1.5), metavar="MM",
                       help="model voxel spacing, one value or x,y,z (default 1.5)")
    model.add_argument("--patch", type=_triple(int), default=(96, 96, 96), metavar="N",
                       help="patch size in voxels, one value or z,y,x (default 96)")
    model.add_argument("--window", type=_pair, default=(-1000.0, 2000.0), metavar="LOW,HIGH",
                       help="intensity window in HU (default -1000,2000)")
    model.add_argument("--channels", type=_ints, default=(16, 32, 64, 128, 256), metavar="C,C,...",
                       help="U-Net feature channels per level (default 16,32,64,128,256)")
    model.add_argument("--strides", type=_ints, default=(2, 2, 2, 2), metavar="S,S,...",
                       help="downsampling strides, one fewer than channels (default 2,2,2,2)")
    model.add_argument("--res-units", type=int, default=2, help="residual units per block (default 2)")
    run_group = parser.add_argument_group("run")
    run_group.add_argument("--epochs", type=int, default=100, help="total epochs (default 100)")
    run_group.add_argument("--samples-per-case", type=int, default=2, help="patches per case per epoch (default 2)")
    run_group.add_argument("--lr", type=float, default=1e-3, help="learning rate (default 1e-3)")
    run_group.add_argument("--seed", type=int, default=0)
    run_group.add_argument("--device", choices=("auto", "cpu", "cuda"),
                           help="default: [pipeline] device of the configuration")
    run_group.add_argument("--workers", type=int, default=0, help="data loader processes (default 0)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    # torch and MONAI load only when this command runs, not for every scpnode command
    from inference.segment.unet.data import TrainingDataError
    from inference.segment.unet.spec import Architecture, ModelDirError
    from inference.segment.unet.train import TrainingOptions, train_model

    try:
        train_cases, val_cases = _cases(args)
        options = TrainingOptions(
            spacing_mm=args.spacing,
            patch_size=args.patch,
            intensity_window_hu=args.window,
            architecture=Architecture(channels=args.channels, strides=args.strides, num_res_units=args.res_units),
            labels=args.levels,
            body_values=args.body_values,
            epochs=args.epochs,
            samples_per_case=args.samples_per_case,
            learning_rate=args.lr,
            seed=args.seed,
            device=args.device or args.settings.pipeline.device,
            workers=args.workers,
            name=args.name,
        )
        print(f"training on {len(train_cases)} case(s), validating on {len(val_cases)}; writing {args.out}", flush=True)
        summary = train_model(train_cases, val_cases, args.out, options, resume=args.resume, progress=_print_epoch)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise UsageError(f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from None
    except (TrainingDataError, ModelDirError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    print(f"best epoch {summary.best_epoch}: mean validation Dice {summary.best_dice:.3f}; model in {summary.model_dir}")
    return 0


def _cases(args: argparse.Namespace) -> tuple[list, list]:
    from inference.segment.unet.data import find_cases, read_cohort_csv, split_cases

    if args.cohort:
        if args.images or args.labels or args.bodies:
            raise UsageError("give either --cohort or --images/--labels/--bodies, not both")
        train, val = read_cohort_csv(args.cohort)
        return (train, val) if val else split_cases(train, args.val_fraction, args.seed)
    if not (args.images and args.labels and args.bodies):
        raise UsageError("training data: give --images, --labels and --bodies (or --cohort CSV)")
    if not 0 < args.val_fraction < 1:
        raise UsageError("--val-fraction must be between 0 and 1")
    return split_cases(find_cases(args.images, args.labels, args.bodies), args.val_fraction, args.seed)


def _print_epoch(report) -> None:
    dice = " ".join(f"{name} {'-' if math.isnan(value) else f'{value:.3f}'}"
                    for name, value in report.validation_dice.items())
    mark = " *best, saved" if report.improved else ""
    print(f"epoch {report.epoch}/{report.epochs}  loss {report.loss:.4f}  val Dice {dice}  "
          f"mean {report.mean_dice:.3f}{mark}  ({report.seconds:.1f} s)", flush=True)


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _pair(text: str) -> tuple[float, float]:
    try:
        low, high = (float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH, got {text!r}") from None
    return low, high


def _triple(kind: type):
    def parse(text: str) -> tuple:
        try:
            values = tuple(kind(part) for part in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected one or three numbers, got {text!r}") from None
        if len(values) == 1:
            return values * 3
        if len(values) != 3:
            raise argparse.ArgumentTypeError(f"expected one or three numbers, got {text!r}")
        return values
    return parse


def _levels(text: str) -> tuple[int, ...]:
    try:
        return tuple(verse_id(name.strip().upper()) for name in text.split(","))
    except KeyError as exc:
        raise argparse.ArgumentTypeError(str(exc.args[0])) from None
