"""The fit recipe: a declarative TOML description of one modelling study.

Example (every key shown)::

    [data]
    outcome = "fracture"          # 0/1 column (or class labels for the classifier families)
    id = "study_id"
    covariates = ["age", "sex", "vbmd", "centre"]
    level_combination = "mean"    # "mean", "concatenate" or "per-vertebra" (fit from an extraction folder)
    levels = ["L1", "L2", "L3", "L4"]   # optional: only these levels (default: every level extracted)
    exclude_fractured = false     # leave out vertebrae with a Genant grade >= 1
    group = "patient_id"          # optional: rows sharing it stay on one side of every split
                                  # (default patient_id for per-vertebra rows)

    [split]
    method = "holdout"            # "holdout" (stratified) or "kfold" (stratified)
    test_size = 0.3
    folds = 5
    seed = 42
    [split.matching]              # optional propensity-score matching before the split
    covariates = ["age", "sex"]
    ratio = 2                     # controls per case (the T11-L2 study: 1:2 on age and sex)
    caliper = 0.2                 # in SD of the logit of the propensity score

    [preprocess]
    normalisation = "z-score"     # "z-score", "max-abs" or "percentile"
    deep_pca = 32                 # optional: deep features -> 32 principal components, fused early
    harmonise_by = "centre"       # optional: ComBat across this covariate
    [preprocess.correlation]      # optional redundancy filter
    method = "spearman"
    threshold = 0.9
    [preprocess.reliability]      # optional ICC filter from a repeated extraction
    table = "features_perturbed.csv"
    threshold = 0.75

    [[selection]]                 # applied in order, inside the training split
    method = "mrmr"               # "mrmr" | "lasso" | "stability" | "rfe" | "rfecv" | "correlation"
                                  # | "oversample" (random, of the minority class; fitting only)
    k = 20
    [[selection]]
    method = "lasso"
    rule = "1se"                  # "min" (lambda.min) or "1se"
    folds = 10

    [radscore]
    vois = ["cortical", "cancellous"]

    [[models]]                    # logistic regressions on radscores and covariates
    name = "vertebral"
    inputs = ["cortical", "cancellous"]
    [[models]]
    name = "combined"
    inputs = ["cortical", "cancellous", "vbmd"]

    [[classifiers]]               # the classifier families the source studies compared
    family = "random_forest"
    grid = {n_estimators = [100, 300], max_depth = [3, "none"]}

    [export]
    primary = "combined"
    categories = [0.2, 0.5]       # bounds of low / intermediate / high risk

Inputs of a logistic model are radscore VOI names or covariates. ``null`` is
written as the string "none" in a TOML grid (TOML has no null).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


RECIPES_DIR = Path(__file__).resolve().parent / "recipes"
"""The reproduction recipes shipped with the node (one TOML file per study; see the README)."""


def shipped_recipes() -> dict[str, Path]:
    """Name (file stem) -> path of every shipped recipe."""
    return {path.stem: path for path in sorted(RECIPES_DIR.glob("*.toml"))}


class RecipeError(ValueError):
    """A recipe that cannot be used; one line naming the file and the key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataSpec(_Section):
    outcome: str = "label"
    id: str = "study_id"
    covariates: tuple[str, ...] = ()
    level_combination: Literal["mean", "concatenate", "per-vertebra"] = "mean"
    levels: tuple[str, ...] | None = None
    exclude_fractured: bool = False
    group: str | None = None

    @model_validator(mode="after")
    def _patients_stay_together(self) -> DataSpec:
        if self.level_combination == "per-vertebra" and self.group is None:
            return self.model_copy(update={"group": "patient_id"})
        return self


class MatchingSpec(_Section):
    covariates: tuple[str, ...] = Field(min_length=1)
    ratio: int = Field(2, ge=1)
    caliper: float | None = Field(0.2, gt=0)


class SplitSpec(_Section):
    method: Literal["holdout", "kfold"] = "holdout"
    test_size: float = Field(0.3, gt=0, lt=1)
    folds: int = Field(5, ge=2)
    seed: int = 42
    matching: MatchingSpec | None = None


class CorrelationSpec(_Section):
    method: Literal["pearson", "spearman"] = "spearman"
    threshold: float = Field(0.9, gt=0, le=1)


class ReliabilitySpec(_Section):
    table: Path
    threshold: float = Field(0.75, gt=0, le=1)


class PreprocessSpec(_Section):
    normalisation: Literal["z-score", "max-abs", "percentile"] = "z-score"
    deep_pca: int | None = Field(None, ge=1)
    """Replace each VOI's deep features (``deep_*``) by this many principal components, fused with its
    radiomics (fitted inside the training split)."""
    harmonise_by: str | None = None
    correlation: CorrelationSpec | None = None
    reliability: ReliabilitySpec | None = None


class MrmrStep(_Section):
    method: Literal["mrmr"]
    k: int = Field(20, ge=1)


class LassoStep(_Section):
    method: Literal["lasso"]
    rule: Literal["min", "1se"] = "1se"
    folds: int = Field(10, ge=2)
    n_lambdas: int = Field(50, ge=5)


class StabilityStep(_Section):
    method: Literal["stability"]
    k: int = Field(10, ge=1)
    resamples: int = Field(100, ge=10)
    threshold: float = Field(0.6, gt=0, le=1)


class RfeStep(_Section):
    method: Literal["rfe"]
    k: int = Field(10, ge=1)


class RfecvStep(_Section):
    """Recursive feature elimination with a linear SVM, the number of features chosen by K-fold CV."""

    method: Literal["rfecv"]
    folds: int = Field(5, ge=2)
    min_features: int = Field(1, ge=1)


class CorrelationStep(_Section):
    """A redundancy filter inside the selection chain (e.g. |r| > 0.5 after the LASSO of the
    fracture-type study), keeping of each correlated pair the feature more related to the outcome."""

    method: Literal["correlation"]
    kind: Literal["pearson", "spearman"] = "pearson"
    threshold: float = Field(0.5, gt=0, le=1)


class OversampleStep(_Section):
    """Random oversampling of the minority class(es) to balance the classes (the MRI study, after
    its LASSO). It acts only while fitting, on the training rows (and inside each inner CV fold
    on that fold's training rows): no duplicated row is ever scored, and the node never sees it."""

    method: Literal["oversample"]


SelectionStep = Annotated[MrmrStep | LassoStep | StabilityStep | RfeStep | RfecvStep | CorrelationStep
                          | OversampleStep, Field(discriminator="method")]


class RadscoreSpec(_Section):
    vois: tuple[str, ...] = ("cortical", "cancellous")


class LogisticSpec(_Section):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]+$")
    inputs: tuple[str, ...] = Field(min_length=1)


class ClassifierSpec(_Section):
    family: Literal["logistic", "svm", "knn", "decision_tree", "random_forest", "extra_trees",
                    "gradient_boosting", "mlp", "xgboost", "lightgbm"]
    grid: dict[str, list[Any]] = Field(default_factory=dict)

    @field_validator("grid")
    @classmethod
    def _none(cls, grid: dict[str, list[Any]]) -> dict[str, list[Any]]:
        return {k: [None if v == "none" else v for v in values] for k, values in grid.items()}


class ExportSpec(_Section):
    primary: str | None = None
    categories: tuple[float, ...] = (0.2, 0.5)

    @field_validator("categories")
    @classmethod
    def _increasing(cls, bounds: tuple[float, ...]) -> tuple[float, ...]:
        if list(bounds) != sorted(bounds) or not all(0 < b < 1 for b in bounds):
            raise ValueError("category bounds must increase strictly inside (0, 1)")
        return bounds


class Recipe(_Section):
    """One modelling study, validated; see the module docstring."""

    data: DataSpec = DataSpec()
    split: SplitSpec = SplitSpec()
    preprocess: PreprocessSpec = PreprocessSpec()
    selection: tuple[SelectionStep, ...] = ()
    radscore: RadscoreSpec = RadscoreSpec()
    models: tuple[LogisticSpec, ...] = ()
    classifiers: tuple[ClassifierSpec, ...] = ()
    export: ExportSpec = ExportSpec()

    @model_validator(mode="after")
    def _check(self) -> Recipe:
        known = set(self.radscore.vois) | set(self.data.covariates)
        for model in self.models:
            unknown = [i for i in model.inputs if i not in known]
            if unknown:
                raise ValueError(f"models.{model.name}: unknown inputs {unknown}; "
                                 f"known: radscore vois and data.covariates {sorted(known)}")
        names = [m.name for m in self.models]
        if len(set(names)) != len(names):
            raise ValueError("models: names must be unique")
        if self.export.primary is not None and self.export.primary not in names:
            raise ValueError(f"export.primary {self.export.primary!r} is not one of models {names}")
        if self.preprocess.harmonise_by and self.preprocess.harmonise_by not in self.data.covariates:
            raise ValueError("preprocess.harmonise_by must be one of data.covariates")
        return self


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate a recipe TOML file, or a shipped recipe by name; relative paths resolve next to it.

    Raises:
        RecipeError: unreadable file or a bad key (one line).
    """
    path = Path(path)
    if not path.exists() and str(path) in shipped_recipes():
        path = shipped_recipes()[str(path)]
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise RecipeError(f"{path}: cannot read recipe ({exc})") from None
    return recipe_from_dict(document, source=str(path), base=path.parent)


def recipe_from_dict(document: dict[str, Any], source: str = "recipe", base: Path | None = None) -> Recipe:
    try:
        recipe = Recipe.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(document)"
        raise RecipeError(f"{source}: {where}: {first['msg']}") from None
    rel = recipe.preprocess.reliability
    if rel is not None and base is not None and not rel.table.is_absolute():
        fixed = rel.model_copy(update={"table": base / rel.table})
        recipe = recipe.model_copy(update={"preprocess": recipe.preprocess.model_copy(update={"reliability": fixed})})
    return recipe
