# The Quick Start of the seed README; only the pool's connection settings differ
# (SCHEDULER_DSN, defaulting to the local server). Run it with `nox -s demo`, as often as
# you like: the fixed job id is written with REPLACE, so a second run does not collide
# with the first run's job, and one job is due now so the run shows a job running.
import asyncio
import os
from datetime import UTC, datetime, timedelta

import asyncpg

from scheduler import ConflictResolution, JobPriority, Scheduler


# Define your async job functions
async def send_email(recipient: str, subject: str) -> None:
    """Example job: Send an email"""
    print(f"📧 Sending email to {recipient}: {subject}")
    # Your email sending logic here
    await asyncio.sleep(1)  # Simulate work
    print(f"✅ Email sent to {recipient}")


async def generate_report(report_type: str, user_id: int) -> None:
    """Example job: Generate a report"""
    print(f"📊 Generating {report_type} report for user {user_id}")
    # Your report generation logic here
    await asyncio.sleep(2)  # Simulate work
    print(f"✅ Report generated: {report_type}")


async def main() -> None:
    # Create database connection pool
    db_pool = await asyncpg.create_pool(
        os.environ.get("SCHEDULER_DSN", "postgresql://postgres@127.0.0.1:5432/test")
    )

    # Initialize scheduler
    scheduler = Scheduler(db_pool=db_pool, max_concurrent_jobs=10)
    await scheduler.start()

    try:
        # 0. Schedule a job due now: this replica runs it at once
        job_id0 = await scheduler.schedule(send_email, args=("now@example.com", "Hello!"))
        print(f"Scheduled email job due now: {job_id0}")

        # 1. Schedule job with auto-generated ID
        job_id1 = await scheduler.schedule(
            send_email,
            execution_time=datetime.now(UTC) + timedelta(minutes=5),
            args=("user@example.com", "Welcome!"),
        )
        print(f"Scheduled email job: {job_id1}")

        # 2. Schedule job with custom ID
        job_id2 = await scheduler.schedule(
            generate_report,
            execution_time=datetime.now(UTC) + timedelta(hours=1),
            args=("monthly", 123),
            job_id="monthly-report-2024-08",
            priority=JobPriority.CRITICAL,
            max_retries=3,
            # A fixed id exists after the first run: replace it rather than fail (RAISE,
            # the default, is for ids that must be new).
            conflict_resolution=ConflictResolution.REPLACE,
        )
        print(f"Scheduled report job: {job_id2}")

        # 3. Schedule with conflict resolution
        # This will ignore the duplicate and return existing job_id
        job_id3 = await scheduler.schedule(
            generate_report,
            execution_time=datetime.now(UTC) + timedelta(hours=2),
            args=("monthly", 456),
            job_id="monthly-report-2024-08",  # Same ID as above
            conflict_resolution=ConflictResolution.IGNORE,
        )
        print(f"Duplicate job ignored: {job_id3}")

        # 4. Cancel a scheduled job
        cancelled = await scheduler.cancel_job(job_id1)
        if cancelled:
            print(f"Job {job_id1} cancelled successfully")

        # 5. Replace/update an existing job
        job_id4 = await scheduler.schedule(
            generate_report,
            execution_time=datetime.now(UTC) + timedelta(minutes=30),
            args=("weekly", 789),
            job_id="monthly-report-2024-08",  # Same ID, but will replace
            conflict_resolution=ConflictResolution.REPLACE,
        )
        print(f"Job replaced: {job_id4}")

        # 6. Wait for the job due now to finish
        done = await scheduler.wait_for_job(job_id0, timeout=30)
        print(f"Job {job_id0} {done.status.value}")

        # Let the scheduler run for a while
        await asyncio.sleep(10)

    finally:
        # Clean shutdown
        await scheduler.shutdown()
        await db_pool.close()


if __name__ == "__main__":
    asyncio.run(main())
