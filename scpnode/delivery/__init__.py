"""Results back to the PACS: the outbox and the sender.

:mod:`.outbox` owns the ``outbox`` table (what is to be sent where, and how it
went); :mod:`.sender` delivers due items by C-STORE or STOW-RS (:mod:`.stow`).
:mod:`.orthanc` runs a private Orthanc, the PACS peer of the demo and the tests.
"""
