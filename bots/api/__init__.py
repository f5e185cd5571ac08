"""The HTTP API front-end (`atelier api`): a versioned JSON API under `/v1` for integrations.

It submits through `jobs` exactly as the chat bots do, so quotas, tiers, fairness, safety, bans, pauses and
cancels behave the same. Its modules each add their routes to the app (`app.ROUTE_MODULES`):

| module | owns |
|---|---|
| `app.py` | `build_app(services)`: middlewares (errors, auth, rate limits) and every module's routes |
| `services.py` | `ApiServices` (the clients, built by the composition root) and the per-request `Caller` |
| `errors.py` | `ApiError` and the one JSON error shape, `read_json` for request bodies |
| `auth.py` | the `Authorization: Bearer` middleware |
| `keys.py` | API keys: create, list, revoke, authenticate (`atelier admin apikey …`) |
| `ratelimit.py` | the token buckets per key and per client address (one Lua script) |
| `submit.py` | request bodies → specs → enqueue (or a cache hit): what batches and the gallery reuse |
| `routes_*.py` | the endpoints |
| `openapi.py` | the OpenAPI 3.1 document, kept true by tests/api/test_openapi.py |
"""
