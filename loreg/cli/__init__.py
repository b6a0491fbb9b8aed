"""The ``loreg`` command line (click), thin over ``loreg.client`` and ``loreg.merge``."""
