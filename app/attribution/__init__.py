"""Attribution: every cent of the cloud bill to a hub and a user, with provenance."""
