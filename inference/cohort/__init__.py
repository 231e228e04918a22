"""Research side: build and validate a site's radscore model from a retrospective cohort.

``table`` (cohort CSV, feature tables), ``extract`` (features per study,
level and VOI), ``recipe`` (the TOML recipe), ``split`` (holdout, k-fold,
propensity matching), ``preprocess``, ``select``, ``models``, ``fit`` (runs a
recipe), ``evaluate`` and ``stats`` (ROC/DeLong, calibration, decision
curves), ``report`` (PNG + HTML), ``calibrate`` (a published model's
constants) and ``export`` (the node's model file). Everything that is fitted
is a scikit-learn estimator inside a Pipeline fitted on the training split
only. Never imports :mod:`scpnode`.
"""
