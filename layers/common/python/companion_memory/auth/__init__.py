"""Authentication and authorisation: JWT issue/verify (``tokens``); later API keys, principals and scopes.

Pure code: key material arrives as objects (PEM/JWK fetched by an adapter) and the clock is passed in.
"""
