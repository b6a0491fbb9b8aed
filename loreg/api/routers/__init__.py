"""One module per resource, each exposing ``router``; ``loreg.api.app`` mounts them all."""
