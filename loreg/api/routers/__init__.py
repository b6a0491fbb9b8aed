"""One module per resource, each exposing ``router``; ``loreg.api.app`` lists and mounts them."""
