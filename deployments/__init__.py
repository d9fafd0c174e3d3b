"""Ray Serve deployments and the session actor: thin adapters around the Ray-free code."""
