"""Quotas, tiers and fair scheduling: who may use how much of the GPU, and in what order.

- `tiers`: tier names, fair-share weights and default limits (built in, or from ATELIER_TIERS_FILE).
- `policy`: a tenant's effective policy (tier + overrides, timezone, paused).
- `ledger`: atomic admission (`reserve`), then `settle` or `refund` exactly once, with an append-only ledger.
- `fairness`: weighted fair queuing as the arq score. `estimates`: moving averages of GPU seconds.
- `cancel`: the cancel signal a running job's worker listens for. `admin`: the admin API for every front-end.

This package imports only `storage` and Redis; `jobs` uses it when it enqueues and runs jobs.
"""
