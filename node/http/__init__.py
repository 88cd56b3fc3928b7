"""The node's HTTP edge: middleware, error rendering, admin authentication, core routes."""
