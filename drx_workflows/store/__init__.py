"""Persistence: the store (MongoDB or the embedded file) and one module per kind of document in it."""
