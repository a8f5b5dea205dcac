"""Alembic environment: runs on the connection handed over by renkei/migrations.py, or on
RENKEI_DATABASE_URL when called as plain `alembic` for autogenerate."""

from alembic import context

import models

config = context.config
target_metadata = models.Base.metadata


def run(connection):
    context.configure(
        connection=connection, target_metadata=target_metadata, render_as_batch=connection.dialect.name == "sqlite"
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    run(connection)
else:
    import os

    from renkei.common.db import make_engine

    with make_engine(os.environ["RENKEI_DATABASE_URL"]).connect() as conn:
        run(conn)
        conn.commit()
