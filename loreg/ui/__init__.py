"""The web UI: server-rendered pages under ``/ui`` over the same services as the API.

``loreg.ui.routes.router`` is mounted by ``loreg.api.app.create_app``; templates and
static files ship as package data. See ``session`` for how sign-in, cookies and CSRF work.
"""
