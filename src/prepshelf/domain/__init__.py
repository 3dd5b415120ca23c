"""What each object is: frozen dataclasses and the pure rules that belong to them.

The layers above (store, jobs, api, cli) exchange these instead of database rows as dicts.
Nothing here runs SQL, reads a file or imports a framework.
"""
