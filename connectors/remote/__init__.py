"""Out-of-process plugins: a plugin served over HTTP registers with the node and heartbeats.

`server` wraps any `ComputePlugin` as an HTTP service (the plugin side); `client.RemotePlugin`
is the node side, a `ComputePlugin` whose every call is an HTTP request to that service.
Wire protocol (JSON, `Authorization: Bearer <call token>` on every request), under `/plugin/v1`:
`GET info|health|datasource|instances|instances/{id}|instances/{id}/storage|instances/{id}/outputs`,
`GET instances/{id}/logs?offset=&limit=`,
`POST account|instances|instances/{id}/deploy|start|stop|checkpoint`, `DELETE instances/{id}`.
Errors are `{"error": code, "message": ...}` with the codes of `connectors.errors`.
"""
