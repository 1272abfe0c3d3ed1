"""A started scheduler's machinery: the services, the runner, the listener and the running
attempts, wired together, run until asked to stop, then drained.

`Scheduler.start()` builds one (some parts read the event loop's clock, and a `Scheduler`
may be created where no loop runs yet) and delegates its lifecycle here; the `Scheduler`
keeps the public API and its state."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anyio
import asyncpg

from scheduler.attempt_runner import JobRunner
from scheduler.config import SchedulerConfig
from scheduler.executors.process import ProcessPool
from scheduler.health import Health
from scheduler.observing import Observability
from scheduler.outcomes import CancelReason
from scheduler.postgres.listener import Listener
from scheduler.postgres.sql import channel_for
from scheduler.running_jobs import RunningJob, RunningJobs, WorkerIdentity
from scheduler.services.claiming import Claims
from scheduler.services.completions import CompletionBatcher
from scheduler.services.dispatcher import Dispatcher
from scheduler.services.heartbeat import Heartbeat
from scheduler.services.pruner import Pruner
from scheduler.services.queue_depth import QueueDepthReader
from scheduler.services.reaper import Reaper
from scheduler.services.ticker import Ticker
from scheduler.store import JobStore, Success
from scheduler.tasks import TaskCatalog
from scheduler.waiting import FinishedJobs

logger = logging.getLogger("scheduler")

#: After the grace period, how long cancelled jobs get to stop and record their outcome
#: before shutdown abandons them.
SHUTDOWN_BOUND = 5.0
#: How often a replica whose listener hears no notifications (no listen_dsn behind a pooler
#: in transaction mode) looks for due jobs and schedules.
UNHEARD_POLL_INTERVAL = 1.0
#: How long a stopping scheduler tries to remove its worker row.
UNREGISTER_BOUND = 5.0


class Runtime:
    """The services of one started scheduler and their life: start, run, drain, stop."""

    def __init__(
        self,
        config: SchedulerConfig,
        pool: asyncpg.Pool | None,
        store: JobStore,
        tasks: TaskCatalog,
        observability: Observability,
        identity: WorkerIdentity,
        finished: FinishedJobs,
        *,
        queue_names: Callable[[], list[str]],
        health: Callable[[], Health],
        on_failed: Callable[[], None],
        listen_dsn: str | None = None,
    ) -> None:
        self._config = config
        # Where the listener connects, when not through the pool (kept out of the config:
        # a DSN may hold a password).
        self._listen_dsn = listen_dsn
        self._store = store
        self._identity = identity
        self._finished = finished
        # Called (cleaned up) when a fatal error stopped a scheduler that was running.
        self._on_failed = on_failed
        self.failure: BaseException | None = None
        self.main_task: asyncio.Task[None] | None = None
        self.grace = config.shutdown_grace
        self._grace_scope: anyio.CancelScope | None = None  # while the drain waits
        # Attempts shutdown gave up waiting for (they ignored cancellation): referenced so
        # their tasks are not garbage-collected while they still run.
        self._abandoned: set[asyncio.Task[None]] = set()
        self.services: anyio.abc.TaskGroup | None = None
        self.running = running = RunningJobs(
            config.max_concurrent_jobs, config.prefetch, start=self._start_job
        )
        self._stop_requested = anyio.Event()
        self._stopped = anyio.Event()
        self._ready = anyio.Event()
        # Sync tasks run here, one thread per slot at most.
        self._threads = ThreadPoolExecutor(
            max_workers=config.max_concurrent_jobs, thread_name_prefix="scheduler-job"
        )
        # Children for executor="process" tasks, started on first use.
        self._processes = ProcessPool(
            config.effective_process_pool_size,
            max_jobs_per_child=config.process_max_jobs_per_child,
            max_memory_per_child=None
            if config.process_max_memory_per_child_mb is None
            else config.process_max_memory_per_child_mb * 1024 * 1024,
            max_result_bytes=config.max_result_bytes,
        )
        # Successes wait here for a claim to carry them, or commit together.
        self.completions = CompletionBatcher[Success](store.record_successes)
        self.dispatcher = Dispatcher(
            store,
            Claims(store, self.completions),
            running,
            identity,
            tasks.names,
            batch_size=config.claim_batch_size,
            poll_interval=config.poll_interval,
            queue_names=queue_names,
        )
        self.heartbeat = Heartbeat(
            store,
            running,
            identity,
            tasks.names,
            lease_time=config.lease_time,
            interval=config.heartbeat_interval,
            orphan_retries=config.orphan_retries,
            on_registered=self.dispatcher.wakeup.set,
            queue_names=queue_names,
        )
        self.runner = JobRunner(
            store,
            running,
            identity,
            tasks.get,
            config.retry_backoff,
            self._threads,
            fence_deadline=self.heartbeat.fence_deadline,
            max_result_bytes=config.max_result_bytes,
            observability=observability,
            processes=self._processes,
            record_success=self.completions.complete,
        )
        self.reaper = Reaper(
            store,
            interval=config.reap_interval,
            unrunnable_job_timeout=config.unrunnable_job_timeout,
            orphan_retries=config.orphan_retries,
        )
        self.pruner = Pruner(store, retention=config.retention, interval=config.prune_interval)
        self.ticker = Ticker(
            store,
            poll_interval=config.poll_interval,
            on_fired=observability.schedule_fired if observability.events else None,
        )
        self.queue_depths = (
            None
            if observability.queue_depth_interval is None
            else QueueDepthReader(
                store,
                interval=observability.queue_depth_interval,
                on_depths=observability.queue_depths,
            )
        )
        observability.bind(running, identity, health)
        # No pool (a store given without one) or listen=False: no LISTEN, the services
        # poll every poll_interval (scheduler/poll_only.py).
        self.listener = (
            None
            if pool is None or not config.listen
            else Listener(
                pool,
                channel_for(config.schema),
                on_due=self.dispatcher.notify_due,
                on_schedule=self.ticker.notify_due,
                on_cancel=self.on_cancel_requested,
                on_reconnect=self._catch_up,
                check_interval=config.listener_check_interval,
                check_timeout=config.listener_check_timeout,
                on_finished=self._finished.notify,
                connect=None if listen_dsn is None else self._connect_listener,
                on_unheard=self._poll_often,
            )
        )

    # -- lifecycle --------------------------------------------------------------------
    async def start(self) -> None:
        """Register this worker and start the services; raises what stopped them if they
        failed before they were running."""
        await self.heartbeat.register()
        # asyncpg is asyncio-only; this task hosts the scheduler's anyio task groups.
        self.main_task = asyncio.get_running_loop().create_task(
            self._run(), name=f"scheduler-{self._identity.current}"
        )
        await self._ready.wait()
        if self.failure is not None:
            raise self.failure

    async def abort_start(self) -> None:
        """Undo a start() that failed or was cancelled part-way: nothing may keep running."""
        if self.main_task is not None:
            self.grace = 0.0
            if self._ready.is_set():
                self._stop_requested.set()  # it runs (or is cleaning up): stop it in order
            else:
                self.main_task.cancel()  # still starting its services
            with anyio.move_on_after(SHUTDOWN_BOUND + UNREGISTER_BOUND):
                await self._stopped.wait()
        elif self._identity.registered:
            with anyio.move_on_after(UNREGISTER_BOUND):
                await self._store.unregister_worker(self._identity.current)

    async def stop(self, grace: float | None) -> None:
        """Stop claiming, drain within `grace` (None: as configured, or as a previous call
        set), and return once cleaned up. A shorter grace while draining cuts it short."""
        if grace is not None:
            self.grace = grace
            if self._grace_scope is not None:
                # Already draining (a second Ctrl-C): a shorter grace ends it sooner.
                self._grace_scope.deadline = min(
                    self._grace_scope.deadline, anyio.current_time() + self.grace
                )
        self._stop_requested.set()
        await self._stopped.wait()

    # -- notifications ----------------------------------------------------------------
    async def _connect_listener(self) -> asyncpg.Connection[Any]:
        connection: asyncpg.Connection[Any] = await asyncpg.connect(
            self._listen_dsn, timeout=self._config.listener_check_timeout
        )
        return connection

    def _poll_often(self) -> None:
        """Notifications do not arrive: look at the tables every UNHEARD_POLL_INTERVAL."""
        self.dispatcher.poll_at_least_every(UNHEARD_POLL_INTERVAL)
        self.ticker.poll_at_least_every(UNHEARD_POLL_INTERVAL)

    def _catch_up(self) -> None:
        """Notifications may have been lost: look at the tables now."""
        self.dispatcher.wakeup.set()
        self.ticker.wakeup.set()
        self._finished.notify_all()

    def _start_job(self, entry: RunningJob) -> None:
        # A plain task per attempt, outside the service task groups: shutdown must be able
        # to stop waiting for a job that ignores cancellation.
        entry.task = asyncio.get_running_loop().create_task(
            self.runner.run(entry), name=f"job-{entry.job_id}-{entry.key[1]}"
        )

    def on_cancel_requested(self, job_id: str) -> None:
        running = self.running
        for entry in running.for_job(job_id):
            if not entry.recording:
                running.cancel(entry, CancelReason.REQUESTED)

    # -- running ----------------------------------------------------------------------
    async def _run(self) -> None:
        """The life of a started scheduler: services, then claiming until asked to stop,
        then draining. A fatal error or a cancellation still drains (with no grace) and
        leaves a state that says what happened."""
        abandoned = False
        try:
            async with anyio.create_task_group() as services:
                self.services = services
                if self.listener is not None:
                    await services.start(self.listener.run)
                for service in (self.heartbeat, self.reaper, self.pruner, self.ticker):
                    services.start_soon(service.run)
                if self.queue_depths is not None:
                    services.start_soon(self.queue_depths.run)
                try:
                    async with anyio.create_task_group() as dispatching:
                        # The dispatcher stops between claims: what a claim took is drained.
                        dispatching.start_soon(self.dispatcher.run)
                        self._ready.set()
                        await self._stop_requested.wait()
                        dispatching.cancel_scope.cancel()
                except BaseException:
                    self.grace = 0.0  # failing or cancelled: release at once
                    raise
                finally:
                    with anyio.CancelScope(shield=True):
                        abandoned = await self._drain()
                services.cancel_scope.cancel()
        except BaseException as exc:
            error = _single(exc)
            if isinstance(error, Exception):
                self.failure = error
                if self._ready.is_set():
                    logger.error("the scheduler stopped because of an error", exc_info=error)
            else:
                raise  # cancelled: the drain and the unregistering below still ran
        finally:
            with anyio.CancelScope(shield=True):
                if not abandoned:  # else its lease must lapse before peers take its jobs
                    with anyio.move_on_after(UNREGISTER_BOUND):
                        await self._store.unregister_worker(self._identity.current)
                with anyio.move_on_after(UNREGISTER_BOUND):
                    await self._store.release_connections()
                self._threads.shutdown(wait=False, cancel_futures=True)
                await self._processes.aclose()
            if self.failure is not None and self._ready.is_set():
                # Only now, cleaned up: whoever sees FAILED sees its jobs and row gone too.
                self._on_failed()
            self._ready.set()  # a start() waiting for it sees the failure, cleaned up
            self._stopped.set()

    async def _drain(self) -> bool:
        """Let running jobs finish within the grace period, then cancel and release the
        rest. True if some did not stop within SHUTDOWN_BOUND and were abandoned."""
        running = self.running
        # Attempts claimed ahead that have not started go straight back: nothing new starts.
        running.cancel_waiting(CancelReason.SHUTDOWN)
        if running.executing:
            logger.info("draining %d running job(s) for up to %.1fs", running.executing, self.grace)
        with anyio.move_on_after(self.grace) as grace:
            self._grace_scope = grace
            await running.wait_until_empty()
        self._grace_scope = None
        if not len(running):
            return False
        if running.executing:
            logger.warning(
                "releasing %d job(s) still running after the grace period", running.executing
            )
            running.cancel_all(CancelReason.SHUTDOWN)
        with anyio.move_on_after(SHUTDOWN_BOUND):
            await running.wait_until_empty()
        stuck = list(running)
        if not stuck:
            return False
        logger.warning(
            "abandoning %d attempt(s) that did not stop within %.0fs of being cancelled (%s);"
            " their leases lapse in lease_time and peers run them again",
            len(stuck),
            SHUTDOWN_BOUND,
            ", ".join(
                f"{job_id} attempt {attempt}" for job_id, attempt in sorted(running.attempt_keys())
            ),
        )
        self.runner.abandon()
        for entry in stuck:
            running.remove(entry)
            if entry.task is not None and not entry.task.done():
                entry.task.cancel()
                self._abandoned.add(entry.task)
                entry.task.add_done_callback(self._abandoned.discard)
        return True


def _single(exc: BaseException) -> BaseException:
    """The one error inside nested single-member exception groups (task groups wrap)."""
    inner = getattr(exc, "exceptions", None)  # a BaseExceptionGroup (3.11+, or backported)
    while isinstance(inner, tuple) and len(inner) == 1 and isinstance(inner[0], BaseException):
        exc = inner[0]
        inner = getattr(exc, "exceptions", None)
    return exc
