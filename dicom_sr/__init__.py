"""Encoders from screening results to DICOM objects (SEG, SR, visual report).

Built on highdicom; pure functions, no networking. Never imports :mod:`scpnode`.
"""
