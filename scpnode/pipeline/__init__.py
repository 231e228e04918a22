"""From complete series to results: completion, selection, one analysis per study, jobs.

In the order a series travels: :mod:`.completion` closes quiet series on a
clock and applies :mod:`.selection` (declared rules) and :mod:`.study_choice`
(one series per study); :mod:`.jobs` owns the ``jobs`` table; :mod:`.service`
queues a job per selected series and :mod:`.runner` runs jobs in worker
processes, or :mod:`.dask_runner` computes them on a Dask cluster
(:mod:`.cluster` connects, :mod:`.remote` is the task) and records them in
the node; :mod:`.analysis` turns one job into SEG, SR, report and worklist
row; :mod:`.level_review` is a person's answer on the vertebral levels of a
held job.
"""
