"""Test doubles and helpers shared by unit and integration tests (never shipped in the layer)."""
