"""Domain operations. They take a ``Session`` and the acting ``Principal``, raise
``registry.errors`` types, and never commit: the request or job that calls them does."""
