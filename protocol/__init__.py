"""The Voi wire protocol: framing, message types and access tokens (Ray-free)."""
