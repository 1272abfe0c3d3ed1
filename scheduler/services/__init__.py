"""Background services of one replica. Each has `run_once()` (one step, for tests) and
`run()` (the loop the scheduler supervises)."""
