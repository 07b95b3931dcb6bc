"""Alembic environment: runs on the connection `Database.migrate` hands over."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from leaktrace.store.models import Base

config = context.config
connection = config.attributes.get("connection")

if connection is None:
    # Command-line use (`alembic -x url=… revision --autogenerate`) during development.
    url = context.get_x_argument(as_dictionary=True)["url"]
    with create_engine(url).connect() as own_connection:
        context.configure(connection=own_connection, target_metadata=Base.metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
else:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
