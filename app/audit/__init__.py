"""The append-only audit log of every state change: who, what, when and why."""
