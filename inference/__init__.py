"""The science of the screening node as pure functions on images and arrays.

Volume loading, segmentation backends, compartments, measurements, radiomics,
radscore models and cohort statistics. Never imports :mod:`scpnode`.
"""
