"""Where a prediction log lives: a SQLite file or a PostgreSQL database, named by a path or a
URL, its password read from a secret file when the URL has none, and named in messages without
any secret."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from pneumonia.core.errors import PneumoniaError
from pneumonia.core.secret_files import read_secret_file

POSTGRES = ("postgresql", "postgres", "postgresql+psycopg")
PASSWORD_FILE_ENV = "PNEUMONIA_LOG_PASSWORD_FILE"
"""A file holding the PostgreSQL password (a container secret), used when the URL has none:
the password then appears on no command line."""
_SECRET_QUERY = frozenset({"password", "passfile", "sslpassword", "sslkey"})


def log_url(target: str | Path) -> URL:
    """The database of `target`: a SQLite file path (or `sqlite:///path`), or a PostgreSQL
    URL (`postgresql://`, driven by psycopg). Anything else is a one-line error."""
    given = str(target)
    if "://" not in given:
        return URL.create("sqlite", database=given)
    try:
        url = make_url(given)
    except ArgumentError:
        raise PneumoniaError(f"{given.split('@')[-1]}: not a database URL") from None
    if url.drivername in POSTGRES:
        url = url.set(drivername="postgresql+psycopg")
        secret = os.environ.get(PASSWORD_FILE_ENV)
        if secret and url.password is None and "password" not in url.query:
            url = url.set(password=read_secret_file(Path(secret), "log's password file").strip())
        return url
    if url.drivername == "sqlite" and url.database:
        return url
    raise PneumoniaError(
        f"{url.render_as_string(hide_password=True)}: a prediction log is a SQLite file path "
        "or a postgresql://user:password@host/db URL"
    )


def describe(url: URL) -> str:
    """`url` as messages show it: a SQLite file's path, a server's URL without its password
    (in the `user:password@` form or as a `password=` query parameter)."""
    if url.get_backend_name() == "sqlite":
        return str(url.database)
    hidden = {k: "***" for k in url.query if k.lower() in _SECRET_QUERY}
    return url.update_query_dict(hidden).render_as_string(hide_password=True)
