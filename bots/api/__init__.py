"""The HTTP API front-end (`atelier api`): a versioned JSON API under `/v1` for integrations.

It submits through `jobs` exactly as the chat bots do, so quotas, tiers, fairness, safety, bans, pauses and
cancels behave the same. Its modules each add their routes to the app (`app.ROUTE_MODULES`):

| module | owns |
|---|---|
| `app.py` | `build_app(services)`: middlewares (errors, auth, rate limits) and every module's routes |
| `services.py` | `ApiServices` (the clients, built by the composition root, `atelier.cli_api`) and the per-request `Caller` |
| `errors.py` | `ApiError` and the one JSON error shape, `read_json` for request bodies |
| `auth.py` | the `Authorization: Bearer` middleware and the rate limits' place in it |
| `keys.py` | API keys: create, list, revoke, authenticate (`atelier admin apikey …`) |
| `ratelimit.py` | the token buckets per key and per client address (one Lua script) |
| `submit.py` | request bodies → specs → enqueue (or a result-cache hit): what batches and the gallery reuse |
| `views.py`, `safety.py` | how a job and its images are shown; which flagged images are withheld |
| `routes_submit.py` | `POST /v1/images`, `/v1/edits`, `/v1/upscales` |
| `routes_jobs.py` | `GET`/`DELETE /v1/jobs/{id}`, `GET /v1/jobs/{id}/events` (SSE) |
| `routes_images.py` | `GET /v1/images/{id}` |
| `routes_catalog.py` | `GET /v1/models`, `/v1/loras`, `/v1/queue` |
| `batches.py`, `webhooks.py`, `gallery/` | batches, webhook checks, the web gallery |
| `openapi.py` | the OpenAPI 3.1 document, kept true by tests/api/test_api_openapi.py |
"""
