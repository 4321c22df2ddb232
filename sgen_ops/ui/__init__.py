"""ipywidgets views of the Jobs surface, for JupyterLab notebooks and the Voilà app.

    ops = operator_session()          # SGEN_OPS_OPERATOR, else JUPYTERHUB_USER
    app(ops)                          # Queue | Dead letter | Schedules | Throughput | Workers | Activity Log
    QueueView(ops, per_page=25)       # the seed's queue screen
    JobDetailView(ops, job_id)        # one job, masked for the operator, with its actions
    TriageView(ops)                   # dead letters grouped; replay, edit and replay, dismiss, bulk
    SchedulesView(ops)                # schedules; create/edit with live cron validation; pause, resume, run now
    ThroughputView(ops)               # counts, failure rate and run times over 15m / 1h / 24h / 7d
    WorkersView(ops)                  # live RQ workers and priority queues, stale workers flagged (read-only)
    ActivityLogView(ops)              # the Activity Log (masked), filtered; the chain's verification status

Every view is an ``ipywidgets.VBox`` with ``.refresh()`` and a ``.status`` HTML line where the errors of
its operations appear (styled as errors; the view stays usable). Buttons the operator's role may not use
are disabled with the reason as tooltip, in plain words ("Only administrators can dismiss dead letters; you
are signed in as an editor.").

CSS classes for browser tests (each view's module docstring lists its own):
  every view     sgen-view, sgen-status (+ sgen-status-error | -ok | -info), sgen-refresh; the status line
                 also has <view>-status: sgen-queue-status, sgen-detail-status, sgen-triage-status,
                 sgen-schedules-status, sgen-throughput-status, sgen-activity-status (a detail view nests
                 inside queue and triage)
  tables         sgen-table, sgen-row-select, sgen-job-<id> / sgen-schedule-<id>, sgen-select-page,
                 sgen-table-header, sgen-table-empty, sgen-prev, sgen-next, sgen-page-label
  queue          sgen-queue, sgen-state-filter, sgen-task-filter, sgen-since-filter, sgen-until-filter,
                 sgen-text-filter, sgen-error-code-filter, sgen-include-old-filter, sgen-apply, sgen-reset,
                 sgen-job-table, sgen-throughput-line, sgen-rerun, sgen-cancel, sgen-open-detail,
                 sgen-task-picker, sgen-pause-task, sgen-resume-task, sgen-close-detail, sgen-detail-area
  detail         sgen-detail, sgen-detail-header, sgen-detail-facts, sgen-payload, sgen-attempts,
                 sgen-error-log, sgen-detail-actions, sgen-detail-<action> (rerun, cancel, retry-now, trigger,
                 send-to-dead-letter, replay, resolve, dismiss), sgen-detail-confirm-dismiss, sgen-detail-keep,
                 sgen-resolve-note
  triage         sgen-triage, sgen-groups, sgen-dead-letter-table, sgen-replay, sgen-dismiss,
                 sgen-confirm-dismiss, sgen-keep, sgen-payload-editor, sgen-payload-error, sgen-editing,
                 sgen-edit-replay, sgen-bulk-task, sgen-bulk-error-code, sgen-bulk-since, sgen-bulk-preview,
                 sgen-bulk-count, sgen-bulk-replay, sgen-bulk-dismiss, sgen-bulk-confirm-replay,
                 sgen-bulk-confirm-dismiss, sgen-bulk-keep, sgen-bulk-result, sgen-progress
  schedules      sgen-schedules, sgen-schedule-table, sgen-pause, sgen-resume, sgen-run-now, sgen-edit-schedule,
                 sgen-schedule-form, sgen-form-title, sgen-form-task, sgen-timing-kind, sgen-cron, sgen-every,
                 sgen-timezone, sgen-cron-feedback, sgen-payload-input, sgen-max-attempts, sgen-priority,
                 sgen-retention, sgen-create-schedule, sgen-save-schedule, sgen-new-schedule
  throughput     sgen-throughput, sgen-window, sgen-throughput-summary, sgen-counts-chart, sgen-failure-chart,
                 sgen-timing-chart, sgen-throughput-table
  workers        sgen-workers, sgen-workers-summary, sgen-queues-table, sgen-workers-table, sgen-worker-stale
  live           sgen-live, sgen-live-toggle, sgen-live-interval (queue, dead letter and workers views)
  activity       sgen-activity, sgen-activity-operator, sgen-activity-action, sgen-activity-target,
                 sgen-activity-window, sgen-activity-table, sgen-activity-chain (+ sgen-chain-ok | -broken |
                 -unchecked)
  app            sgen-app
"""

from .activity import ActivityLogView
from .app import app
from .detail import JobDetailView
from .queue import QueueView
from .schedules import SchedulesView
from .session import operator_session
from .throughput import ThroughputView
from .triage import TriageView
from .workers import WorkersView

__all__ = [
    "ActivityLogView",
    "JobDetailView",
    "QueueView",
    "SchedulesView",
    "ThroughputView",
    "TriageView",
    "WorkersView",
    "app",
    "operator_session",
]
