"""Persistence: models, migrations, and one service module per resource.

Services take a `Database` and keyword arguments, own their transactions, and raise
`leaktrace.store.errors` exceptions; they know nothing about HTTP.
"""
