"""API tokens, roles and the request dependencies that enforce tenant isolation."""
