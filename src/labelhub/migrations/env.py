"""Alembic environment: always handed a live connection by ``labelhub.core.db``."""

from alembic import context

from labelhub.core.models import Base, is_search_object

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - the CLI always passes one
    raise RuntimeError("labelhub migrations run through `labelhub db upgrade`")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
    include_name=lambda name, type_, parent: not is_search_object(name),
)

with context.begin_transaction():
    context.run_migrations()
