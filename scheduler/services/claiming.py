"""How the dispatcher claims: which of the store's two claim statements to run, what a
claim's flow facts mean for the next one, and the successes each claim carries.

The store runs one statement per call and decides nothing; this is the policy:

* the plain claim is cheap and concurrent but only takes work no flow control applies to;
  when it says such work may be waiting, the serialised flow claim follows for the slots
  left, and while flow control concerns this worker every claim goes straight to the
  flow path, so priorities hold across limited and free work;
* while limits or locks hold due work back, nothing announces room freed by a peer: the
  dispatcher looks again after `held_back_retry`;
* each out-of-range limit row the flow claim skips is logged once;
* successes waiting in the completion batcher ride along with the claim, and a full claim
  (a backlog) asks the batcher to hold the next ones for the claim after.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from uuid import UUID

from scheduler.services.completions import CompletionBatcher
from scheduler.store import ClaimedJob, ClaimResult, ClaimStore, Success

# The name the limit-problem warning has always been logged under (logging configs use it).
logger = logging.getLogger("scheduler.store")

#: While limits or locks hold due work back, claim again at least this often: a peer's job
#: ending frees room no notification announces.
FLOW_RETRY_SECONDS = 0.1


class Claims:
    """The claim policy of one replica over a store; `claim` is one claim pass."""

    def __init__(
        self, store: ClaimStore, completions: CompletionBatcher[Success] | None = None
    ) -> None:
        self._store = store
        #: Successes waiting for a commit; by default a batcher writing through this store.
        self.completions = (
            completions if completions is not None else CompletionBatcher(store.record_successes)
        )
        # Whether flow control concerned the last claim, and how soon to look again.
        self._flow_seen = False
        self._held_back_retry: float | None = None
        # Limit rows out of bounds that the last flow claim skipped, each logged once.
        self._limit_problems: frozenset[str] = frozenset()

    @property
    def held_back_retry(self) -> float | None:
        """After a claim: None when no flow control concerned it; else how soon (seconds)
        a claim may find work that limits or locks held back."""
        return self._held_back_retry

    async def claim(
        self,
        owner: UUID,
        task_names: Sequence[str],
        limit: int,
        lead: float = 0.0,
        queues: Sequence[str] = ("default",),
    ) -> list[ClaimedJob]:
        """Claim due jobs of `task_names` in `queues`, flow control respected."""
        # Successes waiting for a commit ride along: one commit records them and claims.
        carried = self.completions.take()
        successes = [waiter.lease for waiter in carried]
        # Flow control concerned the last claim: claim everything through the serialised
        # path, so priorities hold across limited and free work.
        first_path = self._store.claim_flow_jobs if self._flow_seen else self._store.claim_jobs
        try:
            result = await first_path(owner, task_names, limit, lead, queues, successes)
        except BaseException as exc:
            self.completions.settle(carried, error=exc)
            raise
        self.completions.settle(carried, result.completed)
        claimed = list(result.claimed)
        # Problems come from the flow claim only. A plain claim that says no flow says no
        # limit row concerns this replica; one that says flow leaves it to the flow claim.
        if self._flow_seen or not result.flow:
            self._report_limit_problems(result.limit_problems)
        last: ClaimResult = result
        if not self._flow_seen and result.flow and len(claimed) < limit:
            # Work under flow control may wait: the serialised path takes what it can.
            last = await self._store.claim_flow_jobs(
                owner, task_names, limit - len(claimed), lead, queues
            )
            claimed += last.claimed
            self._report_limit_problems(last.limit_problems)
        self._flow_seen = last.flow
        retry = FLOW_RETRY_SECONDS
        if last.retry_in is not None:  # a rate limit's next token may come sooner
            retry = min(retry, last.retry_in)
        self._held_back_retry = retry if self._flow_seen else None
        # A full claim means a backlog: successes wait briefly for the next claim to carry
        # them instead of committing on their own.
        self.completions.hold = len(claimed) == limit
        return claimed

    def _report_limit_problems(self, problems: frozenset[str]) -> None:
        """Log each limit row the claim skips once, when it first appears (again after it
        was fixed and broke anew), not at every claim."""
        for problem in sorted(problems - self._limit_problems):
            logger.warning(
                "the claim skips the jobs governed by an out-of-range limit row until it is"
                " fixed (set_queue_limits / set_task_limits): %s",
                problem,
            )
        self._limit_problems = problems
