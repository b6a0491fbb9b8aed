"""The ``loreg`` command line (click), thin over ``registry.client`` and ``registry.merge``."""
