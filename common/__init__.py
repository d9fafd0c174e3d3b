"""Plumbing every layer may use, Ray-free and below protocol/: configuration errors, secrets from the environment."""
