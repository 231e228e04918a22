"""Series completion and selection on a clock (APScheduler).

DICOM has no "end of series" message, so a series counts as complete once no
instance has arrived for ``[completion] quiet_seconds``, or once it has been
open for ``force_seconds`` whatever keeps arriving. One periodic APScheduler
job (every ``check_interval_seconds``) does, in order:

1. mark quiet received series ``complete``,
2. decide every ``complete`` series with the selection rules (``selected`` or
   ``rejected`` with the reasons),
3. choose, per study whose series are all decided, the selected series to
   analyse (:mod:`scpnode.pipeline.study_choice`): the others become ``not_chosen``
   with the reason, the chosen one goes to ``on_series_selected``.

All state lives in the series table, with timestamps, so the job needs no
job store of its own: after a restart (kill -9 included) series that were
still receiving get their quiet period again from the restart (a transfer cut
by the stop is not judged complete before the sender resumes), the first run
of the job picks up complete series whose decision was lost, and (:meth:`CompletionScheduler.start`) studies
whose chosen series the pipeline never acknowledged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from apscheduler.schedulers.background import BackgroundScheduler

from scpnode.config import CompletionSettings, SelectionSettings, StudyChoiceSettings
from scpnode.db import ThreadDatabases
from scpnode.logs import log_event, uid_ref
from scpnode.pipeline.selection import evaluate
from scpnode.pipeline.study_choice import choose
from scpnode.storage import index
from scpnode.storage.index import SeriesRef, SeriesState

LOGGER = logging.getLogger(__name__)
# APScheduler logs every run of a job at INFO; one line every few seconds says nothing.
logging.getLogger("apscheduler.executors.default").setLevel(logging.WARNING)

SeriesHook = Callable[[SeriesRef], None]


class CompletionScheduler:
    """Runs completion, selection and hand-off periodically in a background thread."""

    def __init__(self, databases: ThreadDatabases, completion: CompletionSettings, selection: SelectionSettings,
                 on_series_selected: SeriesHook | None = None,
                 study_choice: StudyChoiceSettings | None = None) -> None:
        self.databases = databases
        self.completion = completion
        self.selection = selection
        self.study_choice = study_choice or StudyChoiceSettings()
        self.on_series_selected = on_series_selected
        self._offered: set[tuple[str, int]] = set()
        """(series, revision) handed to the hook since start: offered again only after a restart, as
        a hook that did not acknowledge (the pipeline could not queue it) would fail the same way."""
        self._scheduler: BackgroundScheduler | None = None

    def start(self) -> None:
        """Start the periodic job. First give series that were receiving when the node stopped their quiet
        period again (:func:`scpnode.storage.index.restart_receiving_clocks`), and choose again in studies whose
        choice nobody acknowledged."""
        resumed = index.restart_receiving_clocks(self.databases.get())
        if resumed:
            log_event(LOGGER, "receiving_series_resumed", series=resumed)
        self.choose_in_studies()
        scheduler = BackgroundScheduler(timezone="UTC")
        scheduler.add_job(self.run_once, "interval", seconds=self.completion.check_interval_seconds,
                          id="series-completion", max_instances=1, coalesce=True)
        scheduler.start()
        self._scheduler = scheduler
        log_event(LOGGER, "completion_started", quiet_seconds=self.completion.quiet_seconds,
                  force_seconds=self.completion.force_seconds)

    def stop(self) -> None:
        """Stop the job, letting a running pass finish."""
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=True)
            self._scheduler = None

    def run_once(self, now: float | None = None) -> list[SeriesRef]:
        """One pass: complete quiet series, decide complete ones, hand off the selected; returns the decided."""
        db = self.databases.get()
        for series in index.complete_quiet_series(db, self.completion.quiet_seconds,
                                                  self.completion.force_seconds, now):
            log_event(LOGGER, "series_complete", series=uid_ref(series.series_instance_uid),
                      instances=series.instance_count)
        decided = []
        for series in index.series_in_state(db, SeriesState.COMPLETE):
            decision = evaluate(index.series_instances(db, series.series_instance_uid), self.selection)
            if not index.record_decision(db, series, decision.selected, decision.reason, decision.to_dict()):
                continue  # reopened by a new instance in the meantime; decided again once complete
            decided.append(series)
            if decision.selected:
                log_event(LOGGER, "series_selected", series=uid_ref(series.series_instance_uid))
            else:
                log_event(LOGGER, "series_rejected", series=uid_ref(series.series_instance_uid),
                          reason=decision.reason)
        self.choose_in_studies()
        return decided

    def choose_in_studies(self) -> list[SeriesRef]:
        """In every study waiting for it, choose the series to analyse and hand it off; returns those handed off."""
        db = self.databases.get()
        handed = []
        for study_uid in index.studies_awaiting_choice(db):
            choice = choose(db, study_uid, self.study_choice)
            if choice.waiting:
                continue
            for series, reason in choice.not_chosen:
                if series.state is not SeriesState.NOT_CHOSEN or series.reason != reason:
                    index.mark_not_chosen(db, series, reason)
                    log_event(LOGGER, "series_not_chosen", series=uid_ref(series.series_instance_uid), reason=reason)
            chosen = choice.analyse
            if chosen is None:
                continue
            if chosen.state is SeriesState.NOT_CHOSEN and not index.choose_again(db, chosen):
                continue  # reopened in the meantime; chosen from again once decided
            fresh = index.series_ref(db, chosen.series_instance_uid)
            if fresh is None or (fresh.series_instance_uid, fresh.revision) in self._offered:
                continue
            log_event(LOGGER, "series_chosen", series=uid_ref(chosen.series_instance_uid),
                      candidates=len(choice.ranking) or 1)
            self._offered.add((fresh.series_instance_uid, fresh.revision))
            self._hand_off(fresh)
            handed.append(fresh)
        return handed

    def _hand_off(self, series: SeriesRef | None) -> None:
        if series is None or self.on_series_selected is None:
            return
        try:
            self.on_series_selected(series)
        except Exception:  # noqa: BLE001 - the hook's failure must not stop completion; retried at restart
            LOGGER.exception("on_series_selected failed",
                             extra={"event": "hand_off_failed", "series": uid_ref(series.series_instance_uid)})
