"""A small registry world for the UI tests: an org with public, private and combined
adapters (with lineage rows), a validated set of versions, and helpers for cookies and pages.
The fixtures (``ui_models``, ``world``) are in tests/ui/conftest.py."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import httpx

from loreg.db.models import AdapterVersion, Lineage
from loreg.services import job_queue
from loreg.worker.loop import Worker
from tests.factories.pushes import Models, push, register_base
from tests.fixtures.api import Account, RegistryServer, unique_name


@dataclass
class World:
    server: RegistryServer
    models: Models
    owner: Account  # admin of the org, pushed everything
    member: Account  # read member of the org
    outsider: Account  # a user with no role in the org
    org: str
    base: str
    alpha: str  # public, two versions, label dataset=alpaca, r=4 on q/k/v/o
    beta: str  # public, r=8 on q/v, label dataset=dolly
    gamma: str  # public, combined from alpha@2 and beta@1 (lineage)
    secret: str  # private

    def ui(self, account: Account | None = None) -> httpx.Client:
        """An httpx client on the server root, signed in to the UI as ``account``."""
        client = httpx.Client(base_url=self.server.base_url, timeout=60)
        if account is not None:
            r = client.post("/ui/login", data={"token": account.token, "next": "/ui/adapters"})
            assert r.status_code == 303, r.text
            assert "loreg_ui" in client.cookies
        return client

    def run_validations(self) -> int:
        worker = Worker(
            self.server.settings,
            sessions=self.server.app.state.sessionmaker,
            store=self.server.app.state.store,
            types=["validate"],
            device="cpu",
        )
        try:
            return worker.run(once=True)
        finally:
            worker.close()

    def running_job(self, progress: float, message: str) -> tuple[str, str]:
        """An export job submitted by ``owner``, claimed by a fake worker: (job id, worker)."""
        r = self.server.client(self.owner.token).post(
            "/jobs", json={"type": "export", "params": {"adapter": self.alpha}}
        )
        assert r.status_code in (200, 201), r.text
        job_id = r.json()["id"]
        worker = unique_name("fake-worker")
        with self.server.app.state.sessionmaker() as s:
            job = job_queue.claim(s, worker, lease_seconds=600, types=["export"])
            assert job is not None and job.id == job_id
            assert job_queue.record_progress(s, job_id, worker, progress, message)
            s.commit()
        return job_id, worker

    def progress(self, job_id: str, worker: str, value: float, message: str) -> None:
        with self.server.app.state.sessionmaker() as s:
            assert job_queue.record_progress(s, job_id, worker, value, message)
            s.commit()


def version_id(server: RegistryServer, ns: str, name: str, number: int) -> int:
    from sqlalchemy import select

    from loreg.db.models import Adapter, Namespace

    with server.app.state.sessionmaker() as s:
        vid = s.scalar(
            select(AdapterVersion.id)
            .join(Adapter, Adapter.id == AdapterVersion.adapter_id)
            .join(Namespace, Namespace.id == Adapter.namespace_id)
            .where(Namespace.name == ns, Adapter.name == name, AdapterVersion.number == number)
        )
        assert vid is not None
        return int(vid)


def build_world(server: RegistryServer, models: Models, root: Path) -> World:
    owner = server.make_user()
    member = server.make_user(scope="read")
    outsider = server.make_user()
    org = server.make_org(owner, unique_name("acme"))
    server.add_member(org, member, "read")
    client = server.client(owner.token)
    base = f"test/{unique_name('Tiny-Llama')}"
    assert register_base(client, models.base, base).status_code == 201

    def put(name: str, folder: Path, public: bool, **labels: str) -> None:
        r = push(
            client,
            folder,
            f"{org}/{name}",
            base=base,
            public=public,
            labels=labels,
            tags=["stable"] if name == "alpha" else [],
        )
        assert r.status_code in (200, 201), r.text

    put("alpha", models.adapter.path, True, dataset="alpaca")
    put("alpha", models.variant(root, 11).path, True, dataset="alpaca")
    put("beta", models.adapter_r8.path, True, dataset="dolly")
    put("gamma", models.variant(root, 12).path, True, dataset="mix")
    put("secret", models.variant(root, 13).path, False, dataset="internal")
    # gamma@1 = ties(alpha@2 x 0.7, beta@1 x 0.3): the rows a combine job records
    child = version_id(server, org, "gamma", 1)
    with server.app.state.sessionmaker() as s:
        for pos, (name, n, w) in enumerate((("alpha", 2, 0.7), ("beta", 1, 0.3))):
            s.add(
                Lineage(
                    child_version_id=child,
                    parent_version_id=version_id(server, org, name, n),
                    position=pos,
                    weight=w,
                    method="ties",
                    params={"density": 0.5},
                )
            )
        s.commit()
    world = World(
        server,
        models,
        owner,
        member,
        outsider,
        org,
        base,
        f"{org}/alpha",
        f"{org}/beta",
        f"{org}/gamma",
        f"{org}/secret",
    )
    assert world.run_validations() >= 5
    return world


def world_models(world: World) -> Models:
    return world.models


def page_html(r: httpx.Response, status: int = 200) -> str:
    """The page's HTML, after checking its status and that it is a whole page."""
    assert r.status_code == status, (r.status_code, r.text[:2000])
    assert r.headers["content-type"].startswith("text/html")
    assert len(re.findall(r"<h1[ >]", r.text)) == 1, "one h1 per page"
    assert 'href="#main"' in r.text, "skip link"
    return r.text
