"""The escalation inbox over HTTP: list, show, claim, resolve, with their 404s and 409s."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from databases import db_url  # noqa: F401  (SQLite and PostgreSQL)
from serve_pieces import KEY, pieces_app
from slmstack.serve.auth import ApiKeys
from slmstack.workflows import Inbox, Packet


def _packet(text: str, **kw) -> Packet:
    return Packet(
        workflow="support",
        text=text,
        reason="needs a person",
        why="intent confidence 0.41 < threshold 0.55",
        intent="refund",
        intent_confidence=0.41,
        entities=({"label": "ORDER", "text": "A-17"},),
        trace=[{"path": "steps[0]", "kind": "skill", "name": "intent"}],
        **kw,
    )


@pytest.fixture
def inbox(db_url):  # noqa: F811
    box = Inbox(db_url)
    for text in ("refund order A-17", "my card broke", "cancel everything"):
        box.add(_packet(text))
    return box


@pytest.fixture
def client(inbox):
    return TestClient(pieces_app(inbox=inbox))


def test_list_shows_open_packets_oldest_first_without_traces(client, inbox):
    inbox.claim(2, "ana")
    r = client.get("/v1/inbox")
    assert r.status_code == 200
    body = r.json()
    assert [p["id"] for p in body["packets"]] == [1, 3] and body["total"] == 2
    first = body["packets"][0]
    assert first["status"] == "open" and first["text"] == "refund order A-17"
    assert first["entities"] == [{"label": "ORDER", "text": "A-17"}]
    assert "trace" not in first
    claimed = client.get("/v1/inbox", params={"status": "claimed"}).json()
    assert [(p["id"], p["claimed_by"]) for p in claimed["packets"]] == [(2, "ana")]
    every = client.get("/v1/inbox", params={"status": "all", "limit": 2}).json()
    assert [p["id"] for p in every["packets"]] == [1, 2] and every["total"] == 3


def test_list_refuses_unknown_status_and_bad_limits(client):
    assert client.get("/v1/inbox", params={"status": "closed"}).status_code == 422
    assert client.get("/v1/inbox", params={"limit": 0}).status_code == 422
    assert client.get("/v1/inbox", params={"limit": 10_000}).status_code == 422


def test_show_returns_everything_and_404s_unknown_ids(client):
    r = client.get("/v1/inbox/1")
    assert r.status_code == 200
    body = r.json()
    assert body["trace"] == [{"path": "steps[0]", "kind": "skill", "name": "intent"}]
    assert body["why"] == "intent confidence 0.41 < threshold 0.55"
    assert body["created_at"].endswith("Z")  # UTC, marked as such
    missing = client.get("/v1/inbox/99")
    assert missing.status_code == 404
    assert "no packet with id 99" in missing.json()["detail"]
    assert client.get("/v1/inbox/0").status_code == 422
    assert client.get(f"/v1/inbox/{2**63}").status_code == 422  # overflows a database int
    assert client.get("/v1/inbox/abc").status_code == 422


def test_claim_takes_an_open_packet_once(client):
    r = client.post("/v1/inbox/1/claim", json={"who": "ana"})
    assert r.status_code == 200
    assert (r.json()["status"], r.json()["claimed_by"]) == ("claimed", "ana")
    again = client.post("/v1/inbox/1/claim", json={"who": "ben"})
    assert again.status_code == 409
    assert (
        "packet 1 is claimed by 'ana'; only open packets can be claimed" in again.json()["detail"]
    )
    assert client.post("/v1/inbox/99/claim", json={"who": "ana"}).status_code == 404


def test_resolve_closes_a_packet_and_refuses_to_overrun_a_claim(client):
    client.post("/v1/inbox/1/claim", json={"who": "ana"})
    theirs = client.post("/v1/inbox/1/resolve", json={"note": "refunded", "who": "ben"})
    assert theirs.status_code == 409
    assert "claimed by 'ana', not 'ben'" in theirs.json()["detail"]
    assert '"force": true' in theirs.json()["detail"]
    forced = client.post(
        "/v1/inbox/1/resolve", json={"note": "refunded", "who": "ben", "force": True}
    )
    assert forced.status_code == 200
    body = forced.json()
    assert (body["status"], body["resolution"], body["claimed_by"]) == (
        "resolved",
        "refunded",
        "ben",
    )
    assert body["resolved_at"] is not None
    twice = client.post("/v1/inbox/1/resolve", json={"note": "again"})
    assert twice.status_code == 409 and "already resolved" in twice.json()["detail"]
    # Without `who`, an open packet is resolved and keeps no claimant.
    plain = client.post("/v1/inbox/2/resolve", json={"note": "replaced the card"}).json()
    assert (plain["status"], plain["claimed_by"]) == ("resolved", None)
    assert client.post("/v1/inbox/99/resolve", json={"note": "x"}).status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {},  # who is required
        {"who": ""},
        {"who": "   "},
        {"who": "a\x00b"},  # PostgreSQL cannot store NUL
        {"who": "x" * 201},  # the column holds 200
        {"who": "ana", "extra": 1},
    ],
)
def test_claim_refuses_input_a_database_could_not_store(client, inbox, body):
    r = client.post("/v1/inbox/1/claim", json=body)
    assert r.status_code == 422, r.text
    assert inbox.get(1).status == "open"


def test_a_server_without_an_inbox_says_so():
    client = TestClient(pieces_app(inbox=None))
    r = client.get("/v1/inbox")
    assert r.status_code == 404
    assert "no escalation inbox; name one under `inbox:`" in r.json()["detail"]


def test_inbox_routes_are_behind_the_keys(inbox):
    client = TestClient(pieces_app(keys=ApiKeys({"ops": KEY}), inbox=inbox))
    assert client.get("/v1/inbox").status_code == 401
    assert client.post("/v1/inbox/1/claim", json={"who": "ana"}).status_code == 401
    assert inbox.get(1).status == "open"
    ok = client.get("/v1/inbox", headers={"Authorization": f"Bearer {KEY}"})
    assert ok.status_code == 200


def test_with_keys_a_key_acts_as_itself_unless_it_may_act_for_others(inbox):
    keys = ApiKeys({"ana": KEY, "desk-tool": "t" * 32})
    client = TestClient(pieces_app(keys=keys, inbox=inbox, act_for_others=("desk-tool",)))
    ana = {"Authorization": f"Bearer {KEY}"}
    spoof = client.post("/v1/inbox/1/claim", json={"who": "ben"}, headers=ana)
    assert spoof.status_code == 403 and "acts as itself" in spoof.json()["detail"]
    assert inbox.get(1).status == "open"
    mine = client.post("/v1/inbox/1/claim", json={}, headers=ana)  # who: the key's name
    assert mine.status_code == 200 and mine.json()["claimed_by"] == "ana"
    forced = client.post("/v1/inbox/2/resolve", json={"note": "x", "force": True}, headers=ana)
    assert forced.status_code == 403 and '"force": true' in forced.json()["detail"]
    tool = {"Authorization": "Bearer " + "t" * 32}
    for_ben = client.post("/v1/inbox/2/claim", json={"who": "ben"}, headers=tool)
    assert for_ben.status_code == 200 and for_ben.json()["claimed_by"] == "ben"


def test_openapi_documents_the_models_and_error_statuses():
    spec = pieces_app().openapi()
    claim = spec["paths"]["/v1/inbox/{packet_id}/claim"]["post"]
    assert set(claim["responses"]) >= {"200", "404", "409", "422"}
    assert claim["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/PacketDetail"
    }
    listing = spec["paths"]["/v1/inbox"]["get"]
    status = next(p for p in listing["parameters"] if p["name"] == "status")
    assert status["schema"]["enum"] == ["open", "claimed", "resolved", "all"]
    assert "trace" not in spec["components"]["schemas"]["PacketSummary"]["properties"]


def test_the_list_pages_by_the_last_id_seen(client):
    first = client.get("/v1/inbox", params={"limit": 1}).json()["packets"]
    then = client.get("/v1/inbox", params={"limit": 1, "after": first[-1]["id"]}).json()
    assert then["packets"] and then["packets"][0]["id"] > first[-1]["id"]
