"""PRD Tool's Python package: domain logic, storage, adapters and observability.

Dependencies point one way: ``functions/`` -> flow packages (``auth``, ``prds``, ``collab``,
``health``, ``maintenance``) -> cross-cutting modules (``settings``, ``errors``,
``observability``, ``aws``, ``events``).
"""

__version__ = "0.1.0"
