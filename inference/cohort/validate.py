"""External validation: a fitted pipeline, frozen, applied to a second cohort.

Nothing is fitted on the external rows. Harmonisation (the training split's
ComBat estimates), scaling, feature selection, radscore and logistic
coefficients and every operating threshold (Youden on the training
partition) come from the fit, so the external figures say how the model
would do at a site that received it as it is. The document has the shape of
:func:`inference.cohort.evaluate.evaluate_predictions` with an ``external``
partition beside ``train``: AUC with DeLong and bootstrap CIs, the metrics at
the training cut-off (sensitivity, specificity, PPV, NPV, F1), calibration
and the decision curve.

A **reference standard** column of the external table (the site's QCT vBMD,
DXA T-score, L1 attenuation...) can be compared with every score by the
paired DeLong test on the same subjects
(:class:`~inference.cohort.evaluate.ReferenceStandard`).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from inference.cohort.evaluate import (
    ReferenceStandard, compare_with_reference, evaluate_multiclass_predictions, evaluate_predictions,
)
from inference.cohort.fit import CohortFit, outcome_values, predictions_frame


class ValidationError(ValueError):
    """An external table the fitted pipeline cannot score (names the columns or values at fault)."""


def external_predictions(fit: CohortFit, table: pd.DataFrame) -> pd.DataFrame:
    """``id, partition="external", fold=-1, y`` and every score of the frozen fit, one row per subject.

    Raises:
        ValidationError: the outcome or a column the fit used missing, a missing outcome value,
            or an outcome value the fit did not know.
    """
    outcome = fit.recipe.data.outcome
    if outcome not in table.columns:
        raise ValidationError(f"external table has no outcome column {outcome!r}")
    used = [c for c in fit.table.columns if ":" in c or c in fit.recipe.data.covariates]
    missing = [c for c in used if c not in table.columns]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise ValidationError(f"external table lacks {len(missing)} column(s) the fit used: {shown}")
    if table[outcome].isna().any():
        raise ValidationError(f"outcome {outcome!r} missing for {int(table[outcome].isna().sum())} subject(s)")
    unknown = sorted({str(v) for v in table[outcome].unique()} - {str(c) for c in fit.models.classes})
    if unknown:
        raise ValidationError(f"outcome {outcome!r} has values the fit did not see: {', '.join(unknown)}")
    features = table.loc[:, used]
    holes = features.columns[features.isna().any()].tolist()
    if holes:
        raise ValidationError(f"missing values in column(s) the fit used: {', '.join(holes[:5])}")
    return predictions_frame(fit.models, features, outcome_values(table[outcome]), fit.recipe, "external", -1)


def validate_fit(fit: CohortFit, table: pd.DataFrame, reference: ReferenceStandard | None = None,
                 bootstrap: int = 1000, seed: int = 0) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Score the external rows with the frozen fit; return (predictions, validation document).

    The predictions hold the fit's own training rows (partition ``train``,
    where the thresholds come from) and the external rows.

    A fit with more than two classes gets the multi-class document (per classifier: macro and
    micro AUC, F1, and per class AUC, sensitivity, specificity and F1 with bootstrap CIs).

    Raises:
        ValidationError: see :func:`external_predictions`; a reference column that is missing,
            not numeric or incomplete, or given for a multi-class fit; a class missing from the
            external cohort.
    """
    external = external_predictions(fit, table)
    train = fit.predictions[fit.predictions.partition == "train"]
    predictions = pd.concat([train, external], ignore_index=True)
    if not fit.binary:
        return predictions, _validate_multiclass(fit, predictions, reference, bootstrap, seed)
    if external["y"].nunique() < 2:
        raise ValidationError("the external cohort has only one outcome class: no AUC can be computed")
    document = evaluate_predictions(predictions, bootstrap, seed)
    document["external"] = {"n": int(len(external)), "events": int(external["y"].sum())}
    if reference is not None:
        try:
            oriented = reference.values(table)
        except ValueError as exc:
            raise ValidationError(f"external table: {exc}") from None
        document["reference"] = compare_with_reference(external, oriented, reference)
        document["comparisons"] += document["reference"].pop("comparisons")
    return predictions, document


def _validate_multiclass(fit: CohortFit, predictions: pd.DataFrame, reference: ReferenceStandard | None,
                         bootstrap: int, seed: int) -> dict[str, Any]:
    if reference is not None:
        raise ValidationError("a reference standard is compared with a binary risk score; this fit has "
                              f"{len(fit.models.classes)} classes")
    external = predictions[predictions.partition == "external"]
    counts = external["y"].astype(str).value_counts()
    absent = [str(c) for c in fit.models.classes if str(c) not in counts.index]
    if absent:
        raise ValidationError(f"the external cohort has no subject of class(es) {', '.join(absent)}: "
                              "no one-vs-rest AUC can be computed for them")
    document = evaluate_multiclass_predictions(predictions, fit.models.classes, list(fit.models.classifiers),
                                               bootstrap, seed)
    document["external"] = {"n": int(len(external)), "per_class": {c: int(n) for c, n in counts.items()}}
    return document
