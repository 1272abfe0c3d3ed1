-- Separate budgets for the two ways an attempt can end badly, and a fencing token that never
-- repeats. From this version on `attempts` counts claims and never goes down (a graceful
-- release and REPLACE leave it alone): it is the token every write of an attempt names, and
-- the number current_job().attempt shows. `failures` (an exception or a timeout) is spent
-- against max_retries; `lost_leases` (the worker died, froze or never ran what it claimed)
-- against the scheduler's orphan_retries.

ALTER TABLE {schema}.jobs
    ADD COLUMN failures    integer NOT NULL DEFAULT 0 CHECK (failures >= 0),
    ADD COLUMN lost_leases integer NOT NULL DEFAULT 0 CHECK (lost_leases >= 0);

-- Rows from earlier versions shared one counter; count their past attempts as failures so no
-- job gains retries from the upgrade.
UPDATE {schema}.jobs
SET failures = attempts - CASE WHEN status = 'running' THEN 1 ELSE 0 END
WHERE attempts > 0 AND status IN ('pending', 'running');
