"""/healthz says ok only when the gateway can take a new session (gateway.http.Health)."""

from __future__ import annotations

from gateway.http import Health


def health(**kw: object) -> Health:
    base: dict[str, object] = dict(
        gateway_id="gw", serving=True, kafka_ok=True, saturated=False, clients=1, max_sessions=2, unstarted=0
    )
    base.update(kw)
    return Health(**base)  # type: ignore[arg-type]


def test_status_and_body() -> None:
    assert health().status == "ok"
    assert health(saturated=True, clients=2).status == "saturated"
    assert health(kafka_ok=False, saturated=True, clients=2).status == "degraded"  # degraded outranks saturated
    assert health(serving=False).status == "degraded"
    assert health(kafka_ok=False).body() == {
        "status": "degraded",
        "gateway_id": "gw",
        "clients": 1,
        "max_sessions": 2,
        "unstarted": 0,
        "kafka": "unreachable",
        "following": True,
    }
