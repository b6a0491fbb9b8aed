"""The SDK's typed results: what they parse, what they keep, and that they match the API."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import BaseModel

from loreg.api.schemas import accounts, audit, bases, jobs, versions, webhooks
from loreg.client import models
from loreg.client.errors import ServerError
from loreg.formats.compat import CompatibilityReport
from loreg.refs import FileEntry

A = "sha256:" + "a" * 64
VERSION: dict[str, Any] = {
    "namespace": "acme",
    "name": "bot",
    "ref": "acme/bot@3",
    "number": 3,
    "digest": A,
    "created_at": "2026-01-31T12:00:00.5Z",
    "labels": {"run": 7},
    "files": [{"path": "adapter_config.json", "digest": A, "size": 10}],
    "base_model": {"name": "org/base", "fingerprint": A},
    "compatibility": {"compatible": True, "match": "exact", "match_hint": None, "problems": []},
    "lineage": [{"parent": "acme/a@1", "weight": 0.5, "method": "ties", "params": {}}],
    "a_field_of_a_later_release": {"x": 1},
}


def test_a_result_keeps_the_document_it_was_read_from() -> None:
    v = models.Version.from_api(VERSION)
    assert v.to_dict() is VERSION  # --json prints the API's document, byte for byte
    assert v.number == 3 and v.adapter == "acme/bot" and v.labels == {"run": 7}
    assert v.created_at == datetime(2026, 1, 31, 12, 0, 0, 500000, tzinfo=UTC)
    assert v.files == [FileEntry("adapter_config.json", A, 10)]
    assert v.base_model is not None and v.base_model.name == "org/base"
    assert v.compatibility is not None and v.compatibility.match == "exact"
    assert v.lineage[0].parent == "acme/a@1" and v.lineage[0].to_dict() is VERSION["lineage"][0]
    with pytest.raises(ValueError):
        v.number = 4  # results are read-only


def test_fields_a_registry_may_leave_out_have_defaults() -> None:
    """A version recorded for offline pulls keeps a few fields; it still reads."""
    v = models.Version.from_api({"namespace": "acme", "name": "bot", "number": 2, "digest": A})
    assert v.ref == "acme/bot@2" and v.files == [] and v.tags == [] and v.r is None
    job = models.Job.from_api(
        {
            "id": "j1",
            "type": "merge",
            "status": "failed",
            "error": {"code": "incompatible", "message": "no"},
        }
    )
    assert job.done and job.error_code == "incompatible" and job.error_message == "no"
    assert not models.Job.from_api({"id": "j2", "type": "merge", "status": "running"}).done


@pytest.mark.parametrize(
    "doc",
    [
        {"namespace": "acme", "name": "bot", "number": "three", "digest": A},
        {"namespace": "acme", "name": "bot", "digest": A},
        {"namespace": "acme", "name": "bot", "number": 1, "digest": A, "files": [{"path": "x"}]},
        ["not", "a", "document"],
        None,
    ],
)
def test_an_answer_the_client_cannot_read_is_a_server_error(doc: Any) -> None:
    with pytest.raises(ServerError) as exc:
        models.Version.from_api(doc)
    assert exc.value.code == "unexpected_answer" and "version" in exc.value.message


# --- the models read what the API sends ------------------------------------------------------

PAIRS: list[tuple[type[models.Document], type[BaseModel]]] = [
    (models.WhoAmI, accounts.WhoAmI),
    (models.Membership, accounts.OrgMembership),
    (models.User, accounts.UserListItem),
    (models.Token, accounts.TokenOut),
    (models.NewToken, accounts.TokenCreated),
    (models.NewUser, accounts.UserCreated),
    (models.Member, accounts.MemberOut),
    (models.TensorSpec, bases.TensorSpec),
    (models.Base, bases.BaseOut),
    (models.BaseRef, versions.BaseRef),
    (models.Parent, versions.LineageOut),
    (models.Version, versions.PushResponse),
    (models.LatestVersion, versions.LatestOut),
    (models.Adapter, versions.AdapterOut),
    (models.Tag, versions.TagOut),
    (models.Webhook, webhooks.WebhookOut),
    (models.NewWebhook, webhooks.WebhookCreated),
    (models.Delivery, webhooks.DeliveryOut),
    (models.AuditEvent, audit.AuditEventOut),
    (models.Job, jobs.JobOut),
    (models.JobOutputs, jobs.JobOutputs),
]


@pytest.mark.parametrize("client_model,api_model", PAIRS, ids=lambda m: m.__name__)
def test_every_field_the_client_reads_is_one_the_api_sends(
    client_model: type[models.Document], api_model: type[BaseModel]
) -> None:
    sent = api_model.model_fields
    assert set(client_model.model_fields) <= set(sent), set(client_model.model_fields) - set(sent)
    for name, field in client_model.model_fields.items():
        if field.is_required():  # the client insists on it: the API always sends it
            assert sent[name].is_required(), name


def test_org_reads_both_the_listing_and_the_detail() -> None:
    both = set(accounts.OrgOut.model_fields) | set(accounts.OrgSummary.model_fields)
    assert set(models.Org.model_fields) <= both


def test_compatibility_reads_the_report_the_registry_stores() -> None:
    assert set(models.Compatibility.model_fields) <= set(CompatibilityReport().to_dict())
