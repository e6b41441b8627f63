"""HTTP delivery: the hot data routes (plain Starlette), the admin API (FastAPI), probes."""
