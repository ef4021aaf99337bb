"""The embedded dispatch server: a real `MicrogridDispatchService` with SQLite storage.

Use it to run the dispatch API on one machine: from the shell (``trio-dispatch serve``),
in a trio program (`serve_dispatch_api`), or in tests (`open_dispatch_server`).

Example:
    >>> async with open_dispatch_server(keys=["secret"]) as server:
    ...     async with trio_dispatch.open_client(server_url=server.url, key="secret") as c:
    ...         ...
"""

from ._keys import ApiKey as ApiKey
from ._keys import KeyRing as KeyRing
from ._serve import RunningServer as RunningServer
from ._serve import open_dispatch_server as open_dispatch_server
from ._serve import serve_dispatch_api as serve_dispatch_api

__all__ = ["ApiKey", "KeyRing", "RunningServer", "open_dispatch_server", "serve_dispatch_api"]
