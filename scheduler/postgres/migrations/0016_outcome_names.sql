-- The outcome names of the attempt history are listed in one place: end_attempts()
-- (functions/end_attempts.sql), which writes every history row and refuses a name it does
-- not know. A CHECK repeating the list made each new outcome a migration too. Dropping a
-- constraint reads no rows; the rows already stored stay as they are.
ALTER TABLE {schema}.job_attempts DROP CONSTRAINT IF EXISTS job_attempts_outcome_check;
