"""Prometheus metrics (the optional extra `prometheus`): an extension that counts what the
scheduler's events say, reads the replica's slots at scrape time, and the queues' backlogs
from the database every few seconds.

    metrics = PrometheusMetrics()
    scheduler = Scheduler(pool, extensions=[metrics])
    app.mount("/metrics", metrics.asgi_app())      # an existing Starlette/FastAPI app
    metrics.serve(9108)                              # or a standalone exporter

Nothing here reads the database per job or per scrape: attempts feed counters and
histograms as their events fire; gauges of running jobs and free slots read memory at
scrape time; queue depth and oldest-due age come from one read per `queue_depth_interval`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from scheduler.errors import ConfigurationError
from scheduler.events import EventHandler, EventKind, JobEvent
from scheduler.extensions import Extension, QueueDepth, ReplicaState

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

#: Seconds; jobs range from milliseconds to hours.
RUN_TIME_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
#: Seconds from due to start: a healthy replica starts within milliseconds.
START_LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

DEFAULT_QUEUE_DEPTH_INTERVAL = 5.0
#: The shortest interval accepted: the backlog read is cheap, but not free.
MIN_QUEUE_DEPTH_INTERVAL = 1.0


def _prometheus() -> Any:
    try:
        import prometheus_client
    except ImportError:  # pragma: no cover - exercised by the no-extras check
        raise ConfigurationError(
            "PrometheusMetrics needs the prometheus_client package: pip install"
            " 'pgcadence[prometheus]'"
        ) from None
    return prometheus_client


class PrometheusMetrics(Extension):
    """Metric names (with `namespace`, default "scheduler"):

    - `scheduler_attempts_total{task, queue, outcome}`: attempts that ended on this
      replica; outcome is the name of the event that ended it in lower case (succeeded,
      retried, failed, snoozed, released, lease_lost, cancelled: the `EventKind` each
      outcome reports).
    - `scheduler_jobs_scheduled_total{task, queue}`: jobs this process scheduled.
    - `scheduler_schedule_fires_total{schedule}`: slots this replica fired.
    - `scheduler_job_run_seconds{task, queue}`: how long the job's code ran.
    - `scheduler_job_start_lag_seconds{task, queue}`: from due to start, database clock.
    - `scheduler_running_jobs`, `scheduler_free_slots`: this replica, read at scrape time.
    - `scheduler_healthy` (1 or 0) and `scheduler_claims_failing_seconds`: `Scheduler.health`
      at scrape time; 0 once every claim has failed for longer than a lease.
    - `scheduler_queue_due_jobs{queue}`, `scheduler_queue_oldest_due_age_seconds{queue}`:
      the database's backlog, read every `queue_depth_interval` seconds (None: never).
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        namespace: str = "scheduler",
        queue_depth_interval: float | None = DEFAULT_QUEUE_DEPTH_INTERVAL,
        run_time_buckets: Sequence[float] = RUN_TIME_BUCKETS,
        start_lag_buckets: Sequence[float] = START_LAG_BUCKETS,
    ) -> None:
        prometheus = _prometheus()
        if queue_depth_interval is not None and not (
            isinstance(queue_depth_interval, (int, float))
            and queue_depth_interval >= MIN_QUEUE_DEPTH_INTERVAL
        ):
            raise ConfigurationError(
                f"queue_depth_interval must be at least {MIN_QUEUE_DEPTH_INTERVAL} seconds"
                f" (or None to not read queue depths), got {queue_depth_interval!r}"
            )
        self.registry: CollectorRegistry = (
            registry if registry is not None else prometheus.CollectorRegistry()
        )
        self._interval = queue_depth_interval
        ns, on = namespace, self.registry
        self.attempts = prometheus.Counter(
            "attempts", "Attempts ended on this replica", ["task", "queue", "outcome"],
            namespace=ns, registry=on,
        )  # fmt: skip
        self.scheduled = prometheus.Counter(
            "jobs_scheduled", "Jobs scheduled by this process", ["task", "queue"],
            namespace=ns, registry=on,
        )  # fmt: skip
        self.fires = prometheus.Counter(
            "schedule_fires", "Schedule slots fired by this replica", ["schedule"],
            namespace=ns, registry=on,
        )  # fmt: skip
        self.run_time = prometheus.Histogram(
            "job_run_seconds", "How long a job's code ran", ["task", "queue"],
            namespace=ns, registry=on, buckets=tuple(run_time_buckets),
        )  # fmt: skip
        self.start_lag = prometheus.Histogram(
            "job_start_lag_seconds", "From a job's due time to its start (database clock)",
            ["task", "queue"], namespace=ns, registry=on, buckets=tuple(start_lag_buckets),
        )  # fmt: skip
        self.running = prometheus.Gauge(
            "running_jobs", "Jobs running on this replica", namespace=ns, registry=on
        )
        self.free_slots = prometheus.Gauge(
            "free_slots", "Free job slots on this replica", namespace=ns, registry=on
        )
        self.healthy = prometheus.Gauge(
            "healthy",
            "1 while this replica runs and claims work; 0 once every claim has failed for"
            " longer than a lease (or it stopped)",
            namespace=ns, registry=on,
        )  # fmt: skip
        self.claims_failing = prometheus.Gauge(
            "claims_failing_seconds",
            "How long every claim of this replica has failed (0: the last one worked)",
            namespace=ns, registry=on,
        )  # fmt: skip
        self.queue_due = prometheus.Gauge(
            "queue_due_jobs", "Pending jobs due now, per queue (database)", ["queue"],
            namespace=ns, registry=on,
        )  # fmt: skip
        self.oldest_due_age = prometheus.Gauge(
            "queue_oldest_due_age_seconds",
            "How long the oldest due pending job of the queue has waited (database clock)",
            ["queue"], namespace=ns, registry=on,
        )  # fmt: skip
        self._queues_seen: set[str] = set()

    # -- the extension hooks ------------------------------------------------------------
    def event_handler(self) -> EventHandler | None:
        return self._on_event

    def queue_depth_interval(self) -> float | None:
        return self._interval

    def bind(self, replica: ReplicaState) -> None:
        self.running.set_function(lambda: replica.running_jobs)
        self.free_slots.set_function(lambda: replica.free_slots)
        self.healthy.set_function(lambda: float(replica.health.healthy))
        self.claims_failing.set_function(lambda: replica.health.claims_failing_for)

    def on_queue_depth(self, depths: Sequence[QueueDepth]) -> None:
        now_seen = {depth.queue for depth in depths}
        for depth in depths:
            self.queue_due.labels(depth.queue).set(depth.due)
            self.oldest_due_age.labels(depth.queue).set(depth.oldest_due_age)
        for queue in self._queues_seen - now_seen:  # drained since: nothing due
            self.queue_due.labels(queue).set(0)
            self.oldest_due_age.labels(queue).set(0)
        self._queues_seen |= now_seen

    def _on_event(self, event: JobEvent) -> None:
        task, queue = event.task_name or "", event.queue or ""
        if event.kind is EventKind.STARTED:
            if event.start_lag is not None:
                self.start_lag.labels(task, queue).observe(event.start_lag)
        elif event.kind is EventKind.SCHEDULED:
            self.scheduled.labels(task, queue).inc()
        elif event.kind is EventKind.SCHEDULE_FIRED:
            self.fires.labels(event.schedule_id or "").inc()
        elif event.attempt is not None and event.ends_attempt:
            self.attempts.labels(task, queue, event.kind.name.lower()).inc()
            if event.run_time is not None:
                self.run_time.labels(task, queue).observe(event.run_time)

    # -- exposing -----------------------------------------------------------------------
    def asgi_app(self) -> Callable[..., Any]:
        """An ASGI app serving the metrics: mount it in an existing app."""
        app: Callable[..., Any] = _prometheus().make_asgi_app(registry=self.registry)
        return app

    def serve(self, port: int, address: str = "127.0.0.1") -> Callable[[], None]:
        """Serve the metrics over HTTP on `address`:`port` from a daemon thread (the
        standalone exporter of `scheduler worker --metrics-port`); returns a function that
        stops it. The default address is local only: pass "0.0.0.0" to let a Prometheus
        on another host scrape it."""
        server, thread = _prometheus().start_http_server(port, address, registry=self.registry)

        def stop() -> None:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)

        return stop
