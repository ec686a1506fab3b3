"""`agentstage serve`: the HTTP face of the same operations the CLI calls.

`create_app(repo, auth)` builds the ASGI app; `run.serve` binds and runs it. Nothing here
imports at CLI start-up: the `serve` command imports this package when it runs.
"""
