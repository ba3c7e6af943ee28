"""Alembic environment: the URL comes from app.db.alembic_config (settings), not from an ini file."""

import logging

from alembic import context
from sqlmodel import SQLModel

import app.models  # noqa: F401  (registers the tables on SQLModel.metadata)
from app.db import get_engine

config = context.config
target_metadata = SQLModel.metadata
log = logging.getLogger("app.migrations")


def run_migrations_online() -> None:
    engine = get_engine(config.attributes["url"])
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            # NOTE: batch mode rebuilds a table by copying it and dropping the old one; with foreign keys on,
            # that drop deletes every row referring to it (ON DELETE CASCADE: a collection's documents). The
            # pragma takes effect only outside a transaction, hence before the migrations' one.
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            connection.commit()
        try:
            with connection.begin():
                context.configure(
                    connection=connection,
                    target_metadata=target_metadata,
                    # SQLite cannot ALTER most things; batch mode rebuilds tables there.
                    render_as_batch=sqlite,
                )
                with context.begin_transaction():
                    context.run_migrations()
                if sqlite:
                    for row in connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall():
                        log.warning("foreign key violation after migrating: %s", tuple(row))
        finally:
            if sqlite:  # the connection goes back to the pool: as every other connection is
                connection.exec_driver_sql("PRAGMA foreign_keys=ON")
                connection.commit()


run_migrations_online()
