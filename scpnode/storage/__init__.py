"""Received instances on disk and their index: the second step of a study's way through the node.

:mod:`.store` owns the files (laid out by UID, written then renamed);
:mod:`.instance_meta` is what the node keeps of each instance; :mod:`.index`
owns the ``studies``, ``series`` and ``instances`` tables and the series
states, including the retention marks; :mod:`.retention` decides which
received images may go and asks the index to mark them.
"""
