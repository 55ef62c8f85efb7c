"""TLS verification stays on: the clients' own httpx client refuses a certificate it cannot
verify, with a `TransportError` naming the TLS problem and no request sent; only a caller who
passes their own ``httpx.AsyncClient`` decides otherwise (here: trusting a test CA)."""

from __future__ import annotations

import inspect
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx
import pytest
import trustme

from zigziik import RetryPolicy, TransportError, ZignaClient, ZiikClient
from zigziik.testing import DEMO_API_KEY, FakeZigna, FakeZiik, serve

RETRY = RetryPolicy(max_attempts=2, base_delay=0.001, max_delay=0.002)
TOKEN = "tls-test-token"


@dataclass
class Served:
    zigna: FakeZigna
    ziik: FakeZiik
    zigna_origin: str
    ziik_origin: str
    ca: trustme.CA


def write_cert(ca: trustme.CA, folder: Path, *names: str) -> tuple[Path, Path]:
    cert = ca.issue_cert(*names)
    certfile, keyfile = folder / f"{names[0]}.pem", folder / f"{names[0]}.key"
    cert.cert_chain_pems[0].write_to_path(str(certfile))
    for extra in cert.cert_chain_pems[1:]:
        extra.write_to_path(str(certfile), append=True)
    cert.private_key_pem.write_to_path(str(keyfile))
    return certfile, keyfile


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    certfile, keyfile = write_cert(ca, folder, "127.0.0.1", "localhost")
    zigna, ziik = FakeZigna(orders=2), FakeZiik(depth=1, branching=2, token=TOKEN)
    with serve(zigna.app, ssl_certfile=certfile, ssl_keyfile=keyfile) as zigna_origin:
        with serve(ziik.app, ssl_certfile=certfile, ssl_keyfile=keyfile) as ziik_origin:
            yield Served(zigna, ziik, zigna_origin, ziik_origin, ca)


def trusting(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


def assert_tls_refusal(exc: TransportError, method: str, url: str) -> None:
    text = str(exc)
    assert f"{method} {url}" in text
    assert "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text, text
    assert isinstance(exc.__cause__, httpx.ConnectError)


@pytest.mark.anyio
@pytest.mark.both_backends
async def test_the_default_zigna_client_refuses_an_unknown_ca(served: Served) -> None:
    served.zigna.reset_stats()
    assert served.zigna_origin.startswith("https://")
    with anyio.fail_after(45):
        async with ZignaClient(
            DEMO_API_KEY, base_url=served.zigna_origin + "/v2", retry=RETRY, timeout=2
        ) as zigna:
            with pytest.raises(TransportError) as caught:
                await zigna.orders.get("1")
    assert_tls_refusal(caught.value, "GET", served.zigna_origin + "/v2/orders/1")
    assert served.zigna.calls == 0  # not one request got through


@pytest.mark.anyio
@pytest.mark.both_backends
async def test_the_default_ziik_client_refuses_an_unknown_ca(served: Served) -> None:
    served.ziik.reset_stats()
    with anyio.fail_after(45):
        async with ZiikClient(served.ziik_origin + "/api", TOKEN, retry=RETRY, timeout=2) as ziik:
            with pytest.raises(TransportError) as caught:
                await ziik.units.get(1)
    assert_tls_refusal(caught.value, "GET", served.ziik_origin + "/api/units/1")
    assert served.ziik.calls == 0


@pytest.mark.anyio
@pytest.mark.both_backends
async def test_a_caller_supplied_client_that_trusts_the_ca_succeeds(served: Served) -> None:
    context = trusting(served.ca)
    with anyio.fail_after(45):
        async with httpx.AsyncClient(verify=context) as http:
            async with ZignaClient(
                DEMO_API_KEY, base_url=served.zigna_origin + "/v2", http_client=http
            ) as zigna:
                orders = await zigna.orders.list().collect()
            async with ZiikClient(served.ziik_origin + "/api", TOKEN, http_client=http) as ziik:
                units = await ziik.units.list().collect()
            assert not http.is_closed  # the caller's client is theirs to close
    assert [o.id for o in orders] == served.zigna.order_ids
    assert {u.id for u in units} == set(served.ziik.unit_ids)


@pytest.mark.anyio
async def test_a_certificate_for_another_host_is_refused_even_by_a_trusting_client(
    tmp_path: Path,
) -> None:
    ca = trustme.CA()
    certfile, keyfile = write_cert(ca, tmp_path, "other.example")
    fake = FakeZigna(orders=1)
    with serve(fake.app, ssl_certfile=certfile, ssl_keyfile=keyfile) as origin:
        with anyio.fail_after(45):
            async with httpx.AsyncClient(verify=trusting(ca)) as http:
                async with ZignaClient(
                    DEMO_API_KEY, base_url=origin + "/v2", http_client=http, retry=RETRY
                ) as zigna:
                    with pytest.raises(TransportError) as caught:
                        await zigna.orders.get("1")
        assert fake.calls == 0
    text = str(caught.value)
    assert "mismatch" in text.lower() or "doesn't match" in text.lower(), text


@pytest.mark.anyio
async def test_https_to_a_plain_http_server_is_a_transport_error() -> None:
    fake = FakeZigna(orders=1)
    with serve(fake.app) as origin:
        https = origin.replace("http://", "https://")
        with anyio.fail_after(45):
            async with ZignaClient(DEMO_API_KEY, base_url=https + "/v2", retry=RETRY) as zigna:
                with pytest.raises(TransportError) as caught:
                    await zigna.orders.get("1")
    assert f"GET {https}/v2/orders/1" in str(caught.value)


def test_no_client_option_turns_verification_off() -> None:
    """The only way to change TLS settings is to pass one's own httpx client."""
    for cls in (ZignaClient, ZiikClient):
        parameters = set(inspect.signature(cls).parameters)
        assert "http_client" in parameters
        assert not parameters & {"verify", "ssl", "ssl_context", "insecure", "cert", "trust_env"}
