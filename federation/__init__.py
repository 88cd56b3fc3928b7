"""Platform interconnection (平台互联): node identity, signed documents and requests, partner
login, catalogs and trades between nodes. Pure rules apart from thin HTTP edges; never imports
`node`, `connectors` or `ledger`.

Public surface (the rest is private):
- `service.FederationService`, `service.FederationSettings`, `service.OwnKeys`: what `node` builds;
- `server.add_routes`: the `/fed/v1` peer API; `sync.run_round`: one catalog sync round;
- `discovery.Discovery`; `store`: queries over the federation tables (a package, one module per
  concern, everything re-exported); `partners.Partner` and `Agreement`;
- state shared by a node's replicas through its database: `nonces` (replay check), `claims`
  (trades in progress), and the catalog issuing cache in `issuing`;
- documents and keys: `canonical`, `documents`, `keys`, `keydoc`; errors in `errors`.
"""
