"""Authentication and authorisation: JWT issue/verify (``tokens``), later API keys, principals and scopes.

Pure code only: key material arrives as objects (PEM/JWK already fetched by an adapter), the clock is passed in.
"""
