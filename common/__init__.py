"""Plumbing every layer may use, Ray-free and below protocol/: configuration errors and YAML files, secrets from
the environment, and iterating a blocking generator from asyncio."""
