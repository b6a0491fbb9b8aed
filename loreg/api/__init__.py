"""The REST API: FastAPI app factory, routers, schemas, auth dependencies, error mapping."""
