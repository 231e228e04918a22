"""Research side: build and validate a site's radscore model from a retrospective cohort.

``table`` (cohort CSV), ``extract`` (features per VOI), ``recipe`` (the TOML
recipe), ``split``, ``preprocess``, ``select``, ``models``, ``calibrate``,
``stats``, ``report`` and ``export`` (the node's model file). Everything that
is fitted is a scikit-learn estimator inside a Pipeline fitted on the
training split only. Never imports :mod:`scpnode`.
"""
