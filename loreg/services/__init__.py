"""Domain operations. They take a ``Session`` and the acting ``Principal``, raise
``loreg.errors`` types, and never commit: the request or job that calls them does."""
