"""Receiving: the DICOM listener and what it checks before anything is stored.

A study enters the node here. :mod:`.connection_guard` admits, caps and times
out connections before they negotiate; :mod:`.receiver` is the C-ECHO/C-STORE
SCP, which checks each instance (:mod:`.instance_checks`, read through
:mod:`.header_scan`) and hands it to :mod:`scpnode.storage`. This package owns
no table.
"""
