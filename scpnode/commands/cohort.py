"""``scpnode cohort``: research side: extract features, fit, evaluate and export a site model.

::

    scpnode cohort extract cohort.csv --out features/ [--profile che2025 | --features names.txt | --model ID]
    scpnode cohort extract cohort.csv --out features/ --scheduler tcp://scheduler:8786   # on a Dask cluster
    scpnode cohort fit features/features.csv recipe.toml --out fit/
    scpnode cohort evaluate fit/ [--bootstrap 1000]          # evaluation.json, PNGs, report.html
    scpnode cohort validate fit/ external.csv --out val/ [--reference vbmd]   # frozen pipeline, second cohort
    scpnode cohort describe features/features.csv --group label --out desc/ [--scores radscore]
    scpnode cohort export fit/ --model-id site-2026 --out site-2026.json
    scpnode cohort calibrate features/features.csv --model che2025-published --model-id che2025-site --out cal/

The science lives in :mod:`inference.cohort`; this module only reads
arguments, calls it, writes files and prints a short summary.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import joblib
import pandas as pd

from scpnode import strict_json
from scpnode.errors import UsageError
from scpnode.logs import log_event

logger = logging.getLogger(__name__)

FIT_FILE = "fit.joblib"
PREDICTIONS_FILE = "predictions.csv"
EVALUATION_FILE = "evaluation.json"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "cohort", help="research side: extract features, fit, evaluate and export a site model",
        description="Research side: extract features, fit, evaluate and export a site model.")
    sub = parser.add_subparsers(dest="cohort_command", metavar="STEP", title="steps", required=True)

    p = sub.add_parser("extract", help="features per study, level and VOI from a cohort CSV")
    p.add_argument("cohort", type=Path, help="cohort CSV: study_id,image[,mask][,vertebrae],label[,covariates...]")
    p.add_argument("--out", type=Path, required=True, metavar="DIR")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--profile", default="che2025", help="radiomics profile (default che2025: every feature)")
    what.add_argument("--features", type=Path, metavar="FILE", help="text file, one feature name per line")
    what.add_argument("--model", metavar="ID_OR_FILE", help="extract only the features of this radscore model")
    p.add_argument("--vois", nargs="+", default=None, help="VOIs to extract (default: the profile's)")
    p.add_argument("--perturb", choices=("erode", "dilate", "shift"), default=None,
                   help="extract from perturbed VOIs (a second extraction for the ICC reliability filter)")
    p.add_argument("--levels", nargs="+", default=None, metavar="LEVEL",
                   help="vertebrae to extract where completely in view, of T10-L5 (default T11 T12 L1 L2)")
    p.add_argument("--deep", choices=("resnet50",), default=None,
                   help="also the 2,048 deep transfer features of each VOI (largest slice, 64 x 64)")
    p.add_argument("--weights", type=Path, default=None, metavar="FILE",
                   help="with --deep: the ResNet50 weights file (ImageNet or RadImageNet, torchvision layout); "
                        "nothing is downloaded")
    p.add_argument("--roi", action="store_true",
                   help="each row's mask is the ROI itself (any label image, 2D or 3D, any modality): "
                        "no segmentation, no vertebrae, no vBMD; one VOI named 'roi'")
    p.add_argument("--roi-label", type=int, default=None, metavar="N",
                   help="with --roi: the ROI's label value in the mask (default: every non-zero voxel)")
    p.add_argument("--modality", choices=("CT", "MR"), default="CT",
                   help="the images' modality (default CT); MR needs --roi and an MR profile (mr_t2)")
    p.add_argument("--workers", type=int, default=1, help="parallel processes (default 1)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="extract on the workers of the Dask cluster at ADDRESS (tcp://host:8786; tls:// uses "
                        "[pipeline] scheduler_tls_* of --config) instead of local processes; the workers must "
                        "see the cohort's image and mask paths")
    p.add_argument("--backend", default=None, help="segmentation backend where no mask is given "
                                                   "(default: [pipeline] segmentation_backend)")
    p.set_defaults(run=run_extract)

    p = sub.add_parser("fit", help="fit a recipe (TOML) on a feature table or an extraction folder")
    p.add_argument("features", type=Path, help="study-level feature table (CSV/Parquet), or the folder of "
                                               "'cohort extract' (levels combined as the recipe says)")
    p.add_argument("recipe", type=Path, help="recipe TOML (see inference.cohort.recipe), or the name of a shipped "
                                             "reproduction recipe: " + ", ".join(_shipped_recipe_names()))
    p.add_argument("--out", type=Path, required=True, metavar="DIR")
    p.set_defaults(run=run_fit)

    p = sub.add_parser("evaluate", help="ROC/DeLong, bootstrap CIs, Youden metrics, calibration, DCA; report")
    p.add_argument("fit_dir", type=Path, help="output folder of 'cohort fit' or 'cohort calibrate'")
    p.add_argument("--out", type=Path, default=None, metavar="DIR", help="default: the fit folder")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples (default 1000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--reference", default=None, metavar="COLUMN",
                   help="reference standard column of the fitted table (the site's vBMD or T-score), compared "
                        "with every score by the paired DeLong test on each partition")
    p.add_argument("--reference-direction", choices=("lower", "higher"), default="lower",
                   help="which reference values mean the event (default lower: vBMD, T-score)")
    p.set_defaults(run=run_evaluate)

    p = sub.add_parser("validate", help="apply a fitted pipeline, frozen, to an external cohort and report")
    p.add_argument("fit_dir", type=Path, help="output folder of 'cohort fit'")
    p.add_argument("external", type=Path, help="external study-level table with the fit's columns and outcome, "
                                               "or an extraction folder of 'cohort extract'")
    p.add_argument("--out", type=Path, required=True, metavar="DIR")
    p.add_argument("--reference", default=None, metavar="COLUMN",
                   help="reference standard column of the external table (e.g. the site's QCT vBMD or T-score), "
                        "compared with every score by the paired DeLong test")
    p.add_argument("--reference-direction", choices=("lower", "higher"), default="lower",
                   help="which reference values mean the event (default lower: vBMD, T-score)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples (default 1000)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=run_validate)

    p = sub.add_parser("describe", help="baseline table by group (named tests) and by-group figures")
    p.add_argument("table", type=Path, help="study-level table (CSV/Parquet): features, outcome, covariates")
    p.add_argument("--group", required=True, help="column of the groups (outcome, partition, centre...)")
    p.add_argument("--variables", nargs="+", default=None,
                   help="columns to describe (default: every column without ':' in its name)")
    p.add_argument("--categorical", nargs="+", default=[], help="columns to treat as categorical")
    p.add_argument("--scores", nargs="+", default=[], help="columns drawn as violin/box plots by group")
    p.add_argument("--id-column", default="study_id")
    p.add_argument("--out", type=Path, required=True, metavar="DIR")
    p.set_defaults(run=run_describe)

    p = sub.add_parser("export", help="write the fitted model as the node's radscore model file")
    p.add_argument("fit_dir", type=Path)
    p.add_argument("--model-id", required=True)
    p.add_argument("--version", default="1.0.0")
    p.add_argument("--primary", default=None, help="logistic model giving the probability (default: recipe)")
    p.add_argument("--profile", default=None, help="radiomics profile the features came from "
                                                   "(default: from the extraction provenance, else che2025)")
    p.add_argument("--out", type=Path, required=True, metavar="FILE")
    p.set_defaults(run=run_export)

    p = sub.add_parser("calibrate", help="calibrate a published model (coefficients fixed) on the local cohort")
    p.add_argument("features", type=Path, help="study-level feature table with the model's features and vbmd")
    p.add_argument("--model", default="che2025-published", help="published model id or file")
    p.add_argument("--model-id", required=True, help="id of the calibrated model")
    p.add_argument("--version", default="1.0.0")
    p.add_argument("--outcome", default="label", help="outcome column (0/1)")
    p.add_argument("--id-column", default="study_id")
    p.add_argument("--categories", type=float, nargs="+", default=[0.2, 0.5], help="risk category bounds")
    p.add_argument("--test-size", type=float, default=0.3)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--out", type=Path, required=True, metavar="DIR")
    p.set_defaults(run=run_calibrate)


def _shipped_recipe_names() -> list[str]:
    from inference.cohort.recipe import shipped_recipes

    return list(shipped_recipes())


def _model_dir(args: argparse.Namespace) -> Path | None:
    settings = getattr(args, "settings", None)
    return getattr(getattr(settings, "pipeline", None), "model_dir", None)


def _cluster_client(args: argparse.Namespace) -> Any:
    """A ``distributed.Client`` of the ``--scheduler`` cluster (imported only when one is asked for)."""
    from scpnode.pipeline.cluster import connect

    try:
        return connect(args.settings.pipeline, args.scheduler)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    except (OSError, TimeoutError) as exc:
        raise UsageError(f"cannot reach the Dask scheduler at {args.scheduler}: {type(exc).__name__}: {exc}") from None


def run_extract(args: argparse.Namespace) -> int:
    from inference.cohort.extract import ExtractionPlan, extract_cohort
    from inference.cohort.table import CohortTableError, read_cohort_table
    from inference.models import ModelError, load_model

    try:
        rows = read_cohort_table(args.cohort, roi=args.roi)
    except CohortTableError as exc:
        raise UsageError(str(exc)) from None
    if args.roi_label is not None and not args.roi:
        raise UsageError("--roi-label needs --roi")
    features: dict[str, tuple[str, ...]] | tuple[str, ...] | None = None
    profile = args.profile
    if args.model:
        try:
            model = load_model(args.model, _model_dir(args))
        except ModelError as exc:
            raise UsageError(str(exc)) from None
        features, profile = dict(model.features), model.profile
    elif args.features:
        if not args.features.is_file():
            raise UsageError(f"{args.features}: no such file")
        names = [ln.strip() for ln in args.features.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
        features = tuple(names)
    if args.deep and args.weights is None:
        raise UsageError("--deep needs --weights FILE (the site's ResNet50 weights; nothing is downloaded)")
    backend = args.backend or args.settings.pipeline.segmentation_backend
    plan = ExtractionPlan(profile=profile, features=features, vois=tuple(args.vois) if args.vois else None,
                          backend=backend, perturbation=args.perturb, deep=args.deep,
                          deep_weights=str(args.weights) if args.weights else None,
                          roi=args.roi, roi_label=args.roi_label, modality=args.modality,
                          **({"levels": tuple(args.levels)} if args.levels else {}))
    if args.scheduler and args.workers > 1:
        raise UsageError("--workers counts local processes; with --scheduler the cluster's workers do the work")
    client = _cluster_client(args) if args.scheduler else None
    try:
        result = extract_cohort(rows, args.out, plan, workers=args.workers, client=client)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    finally:
        if client is not None:
            client.close()
    log_event(logger, "cohort.extract", studies=len(rows), done=result.done, failed=len(result.failures))
    print(f"extracted {result.done} of {len(rows)} studies into {result.study_table}")
    for study_id, reason in result.failures.items():
        print(f"  failed {study_id}: {reason}")
    return 0 if result.done else 1


def run_fit(args: argparse.Namespace) -> int:
    from inference.cohort.extract import PROVENANCE
    from inference.cohort.fit import fit_cohort
    from inference.cohort.recipe import RecipeError, load_recipe

    try:
        recipe = load_recipe(args.recipe)
        data = recipe.data
        if args.features.is_dir():
            provenance = args.features / PROVENANCE
        elif data.level_combination != "mean" or data.levels is not None or data.exclude_fractured:
            raise UsageError(f"recipe [data] combines levels ({data.level_combination}); give the extraction "
                             "folder of 'cohort extract', not a study-level table")
        else:
            provenance = args.features.with_name(args.features.stem + ".provenance.json")
        table, combined = _modelled_table(args.features, data)
        fit = fit_cohort(table, recipe)
    except (RecipeError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    fit.notes[:0] = combined
    args.out.mkdir(parents=True, exist_ok=True)
    joblib.dump(fit, args.out / FIT_FILE)
    fit.predictions.to_csv(args.out / PREDICTIONS_FILE, index=False)
    extraction = json.loads(provenance.read_text()) if provenance.is_file() else {}
    summary = {"features": str(args.features), "recipe": recipe.model_dump(mode="json"), "notes": fit.notes,
               "subjects": len(fit.table), "classes": [str(c) for c in fit.models.classes],
               "profile": extraction.get("profile"), "levels": list(data.levels or extraction.get("levels") or [])}
    (args.out / "fit.json").write_text(json.dumps(summary, indent=2) + "\n")
    log_event(logger, "cohort.fit", subjects=len(fit.table), out=str(args.out))
    test = fit.predictions[fit.predictions.partition == "test"]
    print(f"fitted on {len(fit.table)} subjects; {len(test)} test predictions in {args.out / PREDICTIONS_FILE}")
    for note in fit.notes:
        print(f"  {note}")
    return 0


def _modelled_table(source: Path, data: Any) -> tuple[pd.DataFrame, list[str]]:
    """The table a recipe's ``[data]`` models: from an extraction folder, its levels combined as the recipe
    says (with notes on what was left out); else the study-level table itself."""
    from inference.cohort.extract import table_from_extraction
    from inference.cohort.table import read_feature_table

    if source.is_dir():
        return table_from_extraction(source, data.level_combination, levels=data.levels,
                                     exclude_fractured=data.exclude_fractured)
    return read_feature_table(source, data.id), []


def _load_fit(fit_dir: Path) -> Any:
    path = fit_dir / FIT_FILE
    if not path.is_file():
        return None
    return joblib.load(path)


def run_evaluate(args: argparse.Namespace) -> int:
    from inference.cohort.evaluate import ReferenceStandard, evaluate_fit, evaluate_predictions
    from inference.cohort.explain import shap_figures
    from inference.cohort.nomogram import nomogram_figures
    from inference.cohort.report import lasso_figures, write_report

    out = args.out or args.fit_dir
    out.mkdir(parents=True, exist_ok=True)
    fit = _load_fit(args.fit_dir)
    sections = []
    if fit is not None:
        predictions = fit.predictions
        reference = ReferenceStandard(args.reference, args.reference_direction) if args.reference else None
        try:
            evaluation = evaluate_fit(fit, bootstrap=args.bootstrap, seed=args.seed, reference=reference)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        lasso = lasso_figures(fit.models.radscores, out)
        if lasso:
            sections.append(("LASSO: coefficient path and cross-validation (lambda-min, lambda-1SE)", lasso))
        nomograms = nomogram_figures(fit, out)
        if nomograms:
            sections.append(("Nomograms of the logistic models (training partition)", nomograms))
        explained, _ = shap_figures(fit, out)
        if explained:
            sections.append(("SHAP: mean |SHAP| (bar), beeswarm and decision plots (test partition)", explained))
    elif args.reference:
        raise UsageError(f"{args.fit_dir}: --reference needs the fitted table of 'cohort fit' ({FIT_FILE})")
    elif (args.fit_dir / PREDICTIONS_FILE).is_file():
        predictions = pd.read_csv(args.fit_dir / PREDICTIONS_FILE)
        evaluation = evaluate_predictions(predictions, bootstrap=args.bootstrap, seed=args.seed)
    else:
        raise UsageError(f"{args.fit_dir}: neither {FIT_FILE} nor {PREDICTIONS_FILE} (run 'cohort fit' first)")
    (out / EVALUATION_FILE).write_text(strict_json.dumps(evaluation, indent=1) + "\n")
    n_test = int((predictions.partition == "test").sum())
    report = write_report(predictions, evaluation, out, title=f"Cohort evaluation: {args.fit_dir.name}",
                          summary=f"{predictions['id'].nunique()} subjects, {n_test} test predictions; "
                                  f"bootstrap {args.bootstrap} stratified resamples; Youden thresholds chosen "
                                  "on the training partition.", sections=sections)
    for name, entry in evaluation["scores"].items():
        if "test" in entry and "auc" in entry["test"]:
            auc = entry["test"]["auc"]
            print(f"{name}: test AUC {auc['auc']:.3f} (95% CI {auc['ci_low']:.3f}-{auc['ci_high']:.3f})")
    print(f"report: {report}")
    return 0


def run_validate(args: argparse.Namespace) -> int:
    from inference.cohort.evaluate import ReferenceStandard
    from inference.cohort.report import write_report
    from inference.cohort.validate import ValidationError, validate_fit

    fit = _load_fit(args.fit_dir)
    if fit is None:
        raise UsageError(f"{args.fit_dir}: no {FIT_FILE} (run 'cohort fit' first)")
    reference = ReferenceStandard(args.reference, args.reference_direction) if args.reference else None
    try:
        table, _ = _modelled_table(args.external, fit.recipe.data)
        predictions, validation = validate_fit(fit, table, reference, bootstrap=args.bootstrap, seed=args.seed)
    except (ValidationError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    args.out.mkdir(parents=True, exist_ok=True)
    predictions.to_csv(args.out / PREDICTIONS_FILE, index=False)
    (args.out / "validation.json").write_text(strict_json.dumps(validation, indent=1) + "\n")
    external = validation["external"]
    if fit.binary:
        cohort = f"({external['events']} events); thresholds are the training partition's Youden thresholds"
    else:
        cohort = "(" + ", ".join(f"{n} {c}" for c, n in external["per_class"].items()) + "); the most probable class"
    report = write_report(predictions, validation, args.out, title=f"External validation: {args.external.name}",
                          summary=f"Pipeline of {args.fit_dir} applied frozen to {external['n']} external subjects "
                                  f"{cohort}; bootstrap {args.bootstrap} stratified resamples.")
    log_event(logger, "cohort.validate", subjects=external["n"], out=str(args.out))
    for name, entry in validation["scores"].items():
        if fit.binary:
            auc = entry["external"]["auc"]
            print(f"{name}: external AUC {auc['auc']:.3f} (95% CI {auc['ci_low']:.3f}-{auc['ci_high']:.3f})")
        else:
            print(f"{name}: external macro AUC {entry['external']['macro']:.3f}, "
                  f"micro AUC {entry['external']['micro']:.3f}")
    if reference is not None:
        auc = validation["reference"]["auc"]["external"]
        print(f"reference {reference.column} ({reference.direction} = event): AUC {auc['auc']:.3f} "
              f"(95% CI {auc['ci_low']:.3f}-{auc['ci_high']:.3f})")
        for c in validation["comparisons"]:
            if c["b"].startswith("reference:"):
                print(f"  {c['a']} vs {c['b']}: difference {c['difference']:+.3f}, DeLong p {c['p_value']:.4f}")
    print(f"report: {report}")
    return 0


def run_describe(args: argparse.Namespace) -> int:
    from inference.cohort.baseline import BaselineError
    from inference.cohort.describe import describe_cohort
    from inference.cohort.table import read_feature_table

    try:
        table = read_feature_table(args.table, args.id_column)
        variables = args.variables or [c for c in table.columns if ":" not in c and c != args.group]
        report = describe_cohort(table, args.group, args.out, variables=variables, categorical=args.categorical,
                                 scores=args.scores, title=f"Baseline characteristics: {args.table.name}")
    except (BaselineError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    print(f"baseline table: {args.out / 'baseline.csv'}; report: {report}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from inference.cohort.evaluate import classifier_performance_summary, evaluate_fit, performance_summary
    from inference.cohort.export import ExportError, export_model
    from inference.levels import TARGET_LEVELS

    fit = _load_fit(args.fit_dir)
    if fit is None:
        raise UsageError(f"{args.fit_dir}: no {FIT_FILE} (run 'cohort fit' first)")
    evaluation_path = args.fit_dir / EVALUATION_FILE
    evaluation = (json.loads(evaluation_path.read_text()) if evaluation_path.is_file()
                  else evaluate_fit(fit, bootstrap=200))
    primary = args.primary or fit.recipe.export.primary
    fit_summary = args.fit_dir / "fit.json"
    summary = json.loads(fit_summary.read_text()) if fit_summary.is_file() else {}
    levels = tuple(summary.get("levels") or TARGET_LEVELS)  # the levels extracted, which the node then scores
    try:
        model = export_model(fit, args.model_id, args.version, primary=primary,
                             profile=args.profile or summary.get("profile") or "che2025", levels=levels,
                             performance=(performance_summary(evaluation, primary or "") if fit.binary
                                          else classifier_performance_summary(evaluation)))
    except ExportError as exc:
        raise UsageError(str(exc)) from None
    args.out.parent.mkdir(parents=True, exist_ok=True)
    model.save(args.out)
    log_event(logger, "cohort.export", model_id=model.id, version=model.version)
    if model.classifier is not None:
        print(f"wrote {args.out} (model {model.id} {model.version}, classes "
              f"{', '.join(model.classifier.classes)} on {', '.join(model.levels)}; research use only)")
    else:
        print(f"wrote {args.out} (model {model.id} {model.version}, primary {model.primary_output}, "
              f"threshold {model.operating_threshold:.3f})")
    return 0


def run_calibrate(args: argparse.Namespace) -> int:
    from inference.cohort.calibrate import CalibrationError, calibrate_model
    from inference.cohort.table import read_feature_table
    from inference.models import ModelError, load_model

    try:
        published = load_model(args.model, _model_dir(args))
        table = read_feature_table(args.features, args.id_column)
        model, predictions = calibrate_model(published, table, args.outcome, model_id=args.model_id,
                                             version=args.version, categories=tuple(args.categories),
                                             test_size=args.test_size, seed=args.seed)
    except (ModelError, CalibrationError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    args.out.mkdir(parents=True, exist_ok=True)
    path = model.save(args.out / f"{model.id}.json")
    predictions.to_csv(args.out / PREDICTIONS_FILE, index=False)
    print(f"wrote {path}; predictions for 'cohort evaluate {args.out}' in {args.out / PREDICTIONS_FILE}")
    return 0
