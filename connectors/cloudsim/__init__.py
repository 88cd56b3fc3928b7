"""The cloud platform SIMULATOR (`cpnode-cloudsim`) and its two adapter plugins.

It imitates a provider's management API for tests, demos and scale runs; it runs no workloads.
One process speaks one dialect, chosen by its inventory file:
- `alpha`: resource-oriented REST, camelCase, MiB, price in fen, bearer tokens, page tokens,
  long-running operations, errors as HTTP status + `{"error": {"code", "message"}}`;
- `beta`: action-style RPC (`X-Action` header), PascalCase, GiB, price as a yuan decimal string,
  HMAC-signed requests, offset/limit paging, jobs, errors as HTTP 200 + `{"Response": {"Error"}}`.
"""
