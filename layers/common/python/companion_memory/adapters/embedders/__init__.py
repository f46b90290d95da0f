"""Embedder adapters (ports.Embedder): Amazon Bedrock Titan, any OpenAI-compatible endpoint, a local model
that loads offline from its package, and a hashing embedder for unit tests.

Each module imports its own client library, so a function pays only for the provider it is wired to.
"""
