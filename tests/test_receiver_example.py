"""The README's receiver example accepts our deliveries and refuses forgeries."""

from __future__ import annotations

import importlib.util
import threading
from http.server import HTTPServer
from pathlib import Path

import pytest
import requests

from tests.conftest import event
from webhooks import publish
from webhooks.models import DeliveryStatus
from webhooks.system import get_endpoints

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "receiver.py"


@pytest.fixture
def example():
    spec = importlib.util.spec_from_file_location("receiver_example", EXAMPLE)
    assert spec is not None and spec.loader is not None  # a .py file's
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    server = HTTPServer(("127.0.0.1", 0), module.Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield module, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.mark.usefixtures("worker")
def test_example_receiver_verifies_real_deliveries(example, wait_for, capsys, tenant):
    module, url = example
    endpoint, module.SECRET = get_endpoints().add(url, tenant=tenant)
    try:
        (delivery_id,) = publish(event(), tenant=tenant)
        delivery = wait_for(delivery_id)
        assert delivery.status is DeliveryStatus.DELIVERED
        assert delivery.attempts[0].status_code == 204
        assert module.seen_ids == {delivery_id}
        assert "ready: https://cdn.example.com/shot_1.png" in capsys.readouterr().out

        forged = requests.post(
            url,
            data=b'{"id": "evt_forged"}',
            timeout=5,
            headers={
                "webhook-id": "msg_forged",
                "webhook-timestamp": "1700000000",
                "webhook-signature": "v1,AAAA",
            },
        )
        assert forged.status_code == 401
        assert "msg_forged" not in module.seen_ids
    finally:
        get_endpoints().delete(endpoint.id)


def test_readme_shows_the_example_as_it_is():
    readme = (EXAMPLE.parent.parent / "README.md").read_text()
    assert f"```python\n{EXAMPLE.read_text()}```" in readme
