-- claim_flow_jobs() (0007) runs one large statement whose best plan depends on its
-- arguments (the queues, the tasks, how many jobs). PL/pgSQL caches a generic plan after
-- five calls when its estimate looks no worse, and for this statement the generic plan is
-- several times slower: claims under flow control took 5-9 ms server time for 10 jobs.
-- Planning it for each call's arguments costs a fraction of a millisecond.
ALTER FUNCTION {schema}.claim_flow_jobs SET plan_cache_mode = force_custom_plan;
