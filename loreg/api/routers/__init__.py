"""One module per resource, each exposing ``router``; ``registry.api.app`` mounts them all."""
