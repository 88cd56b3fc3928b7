"""Platform interconnection (平台互联): node identity, signed documents and requests, partner
login, catalogs and trades between nodes. Pure rules apart from thin HTTP edges; never imports
`node`, `connectors` or `ledger`.

Public surface (the rest is private):
- `service.FederationService`, `service.FederationSettings`, `service.OwnKeys`: what `node` builds;
- `server.add_routes`: the `/fed/v1` peer API; `sync.run_round`: one catalog sync round;
- `discovery.Discovery`; `store`: the federation tables; `partners.Partner` and `Agreement`;
- documents and keys: `canonical`, `documents`, `keys`, `keydoc`; errors in `errors`.
"""
