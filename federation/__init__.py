"""Platform interconnection (平台互联): node identity, signed documents and requests, partner
login, catalogs and trades between nodes. Pure rules apart from thin HTTP edges; never imports
`node`, `connectors` or `ledger`."""
