"""``hinted``: what to do next, appended to an API error by status, the error re-raised."""

from __future__ import annotations

import pytest

from loreg.cli.hints import CONFLICT, NOT_FOUND, hinted
from loreg.client.errors import Conflict, NotFound, PermissionDenied


def test_hint_by_status() -> None:
    with pytest.raises(NotFound) as caught, hinted({NOT_FOUND: "see 'loreg ls'"}):
        raise NotFound("adapter 'a/b' not found.", code="adapter_not_found")
    assert caught.value.message == "adapter 'a/b' not found: see 'loreg ls'"
    assert str(caught.value) == caught.value.message
    assert caught.value.code == "adapter_not_found"  # the code is the server's, unchanged
    assert caught.value.to_dict()["error"]["message"].endswith("see 'loreg ls'")


def test_other_statuses_and_repeats_pass_unchanged() -> None:
    with pytest.raises(PermissionDenied) as caught, hinted({CONFLICT: "x"}):
        raise PermissionDenied("no")
    assert caught.value.message == "no"
    with pytest.raises(Conflict) as again, hinted({CONFLICT: "nothing to do"}):
        raise Conflict("already: nothing to do")
    assert again.value.message == "already: nothing to do"
