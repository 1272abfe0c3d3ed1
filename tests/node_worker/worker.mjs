// A scheduler worker in Node.js, talking to PostgreSQL only through the SQL worker protocol
// of migration 0005 (register_worker, worker_heartbeat, claim_jobs, complete_job, fail_job,
// unregister_worker). It runs tests.support.side_jobs:work the way the Python task does:
// each attempt records its start and end in <schema>.executions.
//
//   node worker.mjs DSN SCHEMA [CONCURRENCY] [LEASE_SECONDS] [HEARTBEAT_SECONDS]
//
// Prints "READY <worker id>" once registered; SIGTERM stops it gracefully.

import os from "node:os";
import pg from "pg";

const [dsn, schema, concurrencyArg, leaseArg, heartbeatArg] = process.argv.slice(2);
const TASK = "tests.support.side_jobs:work";
const concurrency = Number(concurrencyArg ?? 4);
const lease = `${Number(leaseArg ?? 2)} seconds`;
const heartbeatMs = Number(heartbeatArg ?? 0.4) * 1000;
if (!/^[a-z_][a-z0-9_]{0,47}$/.test(schema ?? "")) {
  console.error(`bad schema name ${schema}`);
  process.exit(2);
}
const q = `"${schema}"`;

const pool = new pg.Pool({ connectionString: dsn, max: concurrency + 2 });
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
let stopping = false;
const running = new Set();

const { rows: [{ worker }] } = await pool.query(
  `SELECT ${q}.register_worker($1::text[], $2::interval, $3, $4) AS worker`,
  [[TASK], lease, os.hostname(), process.pid],
);

// Heartbeats on their own schedule: a lapsed lease means our attempts are a peer's now,
// so this worker stops at once (fencing itself) instead of writing anything more.
const beat = setInterval(async () => {
  try {
    const { rows: [{ alive }] } = await pool.query(
      `SELECT ${q}.worker_heartbeat($1, $2::interval) AS alive`, [worker, lease]);
    if (!alive) {
      console.error(`worker ${worker} lost its lease; exiting`);
      process.exit(3);
    }
  } catch (error) {
    console.error(`heartbeat failed: ${error.message}`);
  }
}, heartbeatMs);

async function runAttempt(job) {
  const started = Date.now() / 1000;
  const { rows: [{ id }] } = await pool.query(
    `INSERT INTO ${q}.executions (job_id, attempt, pid, worker_id, started_at)
     VALUES ($1, $2, $3, $4, to_timestamp($5)) RETURNING id`,
    [job.job_id, job.attempt, process.pid, worker, started],
  );
  try {
    await sleep(Number(job.args[0]) * 1000);
    await pool.query(
      `UPDATE ${q}.executions SET finished_at = to_timestamp($2) WHERE id = $1`,
      [id, Date.now() / 1000],
    );
    const { rows: [{ done }] } = await pool.query(
      `SELECT ${q}.complete_job($1, $2, $3) AS done`, [worker, job.job_id, job.attempt]);
    if (!done) console.error(`job ${job.job_id} attempt ${job.attempt}: fenced, not recorded`);
  } catch (error) {
    await pool.query(`SELECT ${q}.fail_job($1, $2, $3, $4)`,
      [worker, job.job_id, job.attempt, String(error)]);
  }
}

process.on("SIGTERM", () => { stopping = true; });
console.log(`READY ${worker}`);

while (!stopping) {
  const free = concurrency - running.size;
  if (free <= 0) {
    await sleep(10);
    continue;
  }
  const { rows } = await pool.query(
    `SELECT * FROM ${q}.claim_jobs($1, NULL, $2)`, [worker, free]);
  for (const job of rows) {
    const attempt = runAttempt(job).catch((error) => console.error(error))
      .finally(() => running.delete(attempt));
    running.add(attempt);
  }
  if (rows.length === 0) await sleep(50);
}

await Promise.all(running);
clearInterval(beat);
await pool.query(`SELECT ${q}.unregister_worker($1)`, [worker]);
await pool.end();
