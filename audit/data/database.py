"""Which database the auditor reads and writes: chosen by FiftyOne's settings, checked before use.

FiftyOne picks the database this way: ``FIFTYONE_DATABASE_URI`` (``fo.config.database_uri``)
names a MongoDB server to use; without it FiftyOne runs its own database service with its data in
``FIFTYONE_DATABASE_DIR`` (``~/.fiftyone/var/lib/mongo`` by default). That service is shared per
user: a FiftyOne process attaches to one that another process already started (or to the port an
inherited ``FIFTYONE_PRIVATE_DATABASE_PORT`` names), whatever its own ``FIFTYONE_DATABASE_DIR``
says, and its datasets then go to that other folder.

:func:`check_database` asks the server it is connected to where its data lives
(``getCmdLineOpts``) and, when no URI was given, refuses a server whose data folder is not
``FIFTYONE_DATABASE_DIR``, so the auditor never writes into a database it was not pointed at.
:func:`database_lost` turns a lost connection (pymongo's ``ServerSelectionTimeoutError`` and its
kin) into one line naming the database and what to do.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

_CHECKED: set[tuple[Any, ...]] = set()  # connections already checked in this process


def _config() -> Any:
    """FiftyOne's config."""
    import fiftyone as fo

    return fo.config


def _masked(uri: str) -> str:
    """``uri`` with any password replaced by ``***``."""
    return re.sub(r"(//[^:/@]+):[^@/]*@", r"\1:***@", uri)


def describe() -> str:
    """The database FiftyOne is set to use, in words (a URI, or its service and data folder)."""
    config = _config()
    if config.database_uri:
        return f"{_masked(config.database_uri)} (FIFTYONE_DATABASE_URI)"
    port = os.environ.get("FIFTYONE_PRIVATE_DATABASE_PORT")
    where = f"mongodb://127.0.0.1:{port}, " if port else ""
    return (f"{where}FiftyOne's own database service with its data in {config.database_dir} "
            "(FIFTYONE_DATABASE_DIR)")


def _data_folder(client: Any) -> str | None:
    """The server's ``--dbpath``, or None when it does not say (no admin rights, a cluster)."""
    from pymongo.errors import OperationFailure

    try:
        opts = client.admin.command("getCmdLineOpts")
    except OperationFailure:
        return None
    return (opts.get("parsed", {}).get("storage", {}) or {}).get("dbPath")


def _same_folder(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name one folder."""
    return os.path.realpath(os.path.expanduser(str(a))) == \
        os.path.realpath(os.path.expanduser(str(b)))


def check_database() -> None:
    """Refuse to go on connected to a database other than the one FiftyOne's settings choose.

    With ``FIFTYONE_DATABASE_URI`` the server it names must answer; without it, the server
    FiftyOne attached to must keep its data in ``FIFTYONE_DATABASE_DIR``. Checked once per
    process and connection; cheap after that.

    Raises:
        ValueError: the server's data folder is another one (naming both, the server's address,
            and what to do); pymongo's connection errors when no server answers.

    Example:
        >>> check_database()  # doctest: +SKIP
    """
    import fiftyone.core.odm.database as fodb

    config = _config()
    client = fodb.get_db_client()
    host, port = client.address or ("127.0.0.1", None)
    key = (config.database_uri, config.database_dir, host, port)
    if key in _CHECKED:
        return
    folder = _data_folder(client)
    if not config.database_uri and folder and not _same_folder(folder, config.database_dir):
        raise ValueError(
            f"FiftyOne is connected to the database service at mongodb://{host}:{port}, whose "
            f"data is in {folder}, not in {config.database_dir} (FIFTYONE_DATABASE_DIR): another "
            "FiftyOne process of this user started it, and the auditor writes to no database "
            "but the one chosen. Stop that process (a FiftyOne App, notebook or script) and run "
            "again, or set FIFTYONE_DATABASE_URI to the database to use "
            f"(mongodb://{host}:{port} for that one)")
    _CHECKED.add(key)


def database_lost(exc: BaseException) -> str | None:
    """One line for an error that is a lost or unreachable database (the exception itself or
    what caused it is a pymongo ``ConnectionFailure``), else None."""
    from pymongo.errors import ConnectionFailure

    seen: BaseException | None = exc
    while seen is not None and not isinstance(seen, ConnectionFailure):
        seen = seen.__cause__ or seen.__context__
    if seen is None:
        return None
    first = (str(seen).splitlines() or [""])[0].split(", Timeout:")[0][:200]
    return (f"cannot reach the database {describe()} ({type(seen).__name__}: {first}): "
            "nothing can be read or written without it. Check that it is running (FiftyOne's "
            "own service stops when the process that started it exits) and run the command "
            "again; an interrupted ingest resumes where it stopped, an interrupted score is "
            "marked incomplete and must be run again")
