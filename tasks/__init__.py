"""Thin Prefect adapters, one per stage: cache policy, retries, tags, UI artifacts.

A task body resolves the store, calls one core function from `zooflow`, publishes a UI
artifact and returns an `ArtifactRef`.
"""
