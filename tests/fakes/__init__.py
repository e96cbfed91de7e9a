"""Local HTTP endpoints that answer the REST calls real cloud clients make, for tests."""
