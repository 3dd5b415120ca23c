"""A small client of the prepshelf HTTP API, used by the `ingest`, `jobs` and `search`
commands. It talks HTTP only: it never opens the database, so it works against any server."""
