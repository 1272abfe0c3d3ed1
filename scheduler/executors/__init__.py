"""Where a job's code runs besides the event loop and the thread pool: a pool of child
processes (process.py, with the child's side in child.py) and built-in HTTP jobs (http.py)."""
