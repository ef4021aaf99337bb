"""Request signing (`_auth`) and the server's key checks (`KeyRing`)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from trio_dispatch._auth import auth_metadata, method_short_name, signature
from trio_dispatch.server._errors import ApiError
from trio_dispatch.server._keys import MAX_CLOCK_SKEW, ApiKey, KeyRing

GET = "/frequenz.api.dispatch.v1.MicrogridDispatchService/GetMicrogridDispatch"
DELETE = "/frequenz.api.dispatch.v1.MicrogridDispatchService/DeleteMicrogridDispatch"
NOW = datetime(2030, 1, 1, 12, tzinfo=UTC)
NOW_S = int(NOW.timestamp())


def expected_sig(secret: bytes, key: str, ts: str, nonce: str, method: str) -> str:
    """The signature, computed here without `_auth`: HMAC-SHA256, URL-safe b64, no '='."""
    digest = hmac.new(secret, (key + ts + nonce + method).encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def rfc2104_sig(secret: bytes, message: bytes) -> str:
    """HMAC-SHA256 spelled out with hashlib alone (RFC 2104), as a second opinion."""
    block = secret.ljust(64, b"\0")
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in block) + message).digest()
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in block) + inner).digest()
    return base64.urlsafe_b64encode(outer).decode().rstrip("=")


def signed(key: str, secret: str, *, ts: int = NOW_S, nonce: str = "bm9uY2U", method: str = GET):
    """Metadata a correct client would send, built without `_auth`."""
    short = method.rsplit("/", 1)[-1]
    return {
        "key": key,
        "ts": str(ts),
        "nonce": nonce,
        "sig": expected_sig(secret.encode(), key, str(ts), nonce, short),
    }


def api_error(call: Callable[[], object]) -> tuple[str, str]:
    with pytest.raises(ApiError) as info:
        call()
    return info.value.status, info.value.message


# -- the client side ----------------------------------------------------------------------


def test_method_short_name() -> None:
    assert method_short_name(GET) == "GetMicrogridDispatch"
    assert method_short_name("Bare") == "Bare"


def test_signature_is_hmac_sha256_of_the_fields() -> None:
    sig = signature(
        b"s3cret", key="site-7", ts="1893499200", nonce="AAECAwQ=", method="CreateMicrogridDispatch"
    )
    message = b"site-7" + b"1893499200" + b"AAECAwQ=" + b"CreateMicrogridDispatch"
    assert sig == rfc2104_sig(b"s3cret", message)
    assert sig == expected_sig(
        b"s3cret", "site-7", "1893499200", "AAECAwQ=", "CreateMicrogridDispatch"
    )
    assert len(sig) == 43  # 32 bytes, base64 without the one padding '='
    assert "=" not in sig


def test_signature_depends_on_every_field() -> None:
    base = {"key": "k", "ts": "1", "nonce": "n", "method": "M"}
    reference = signature(b"s", **base)
    for name, value in base.items():
        changed = {**base, name: value + "x"}
        assert signature(b"s", **changed) != reference, name
    assert signature(b"t", **base) != reference


def test_auth_metadata_without_secret() -> None:
    assert auth_metadata("my-key", None, GET, now_s=NOW_S) == {"key": "my-key"}


def test_auth_metadata_with_secret() -> None:
    metadata = auth_metadata("my-key", b"s3cret", GET, now_s=NOW_S)
    assert sorted(metadata) == ["key", "nonce", "sig", "ts"]
    assert metadata["key"] == "my-key"
    assert metadata["ts"] == str(NOW_S) == "1893499200"
    assert len(base64.urlsafe_b64decode(metadata["nonce"])) == 16
    assert metadata["sig"] == expected_sig(
        b"s3cret", "my-key", metadata["ts"], metadata["nonce"], "GetMicrogridDispatch"
    )
    again = auth_metadata("my-key", b"s3cret", GET, now_s=NOW_S)
    assert again["nonce"] != metadata["nonce"]
    assert again["sig"] != metadata["sig"]


# -- KeyRing.from_toml --------------------------------------------------------------------


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "keys.toml"
    path.write_text(text)
    return path


def test_from_toml_all_fields(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [[keys]]
        key = "ops-team"

        [[keys]]
        key = "site-7"
        microgrids = [7, 8]
        sign_secret = "s3cret"
        """,
    )
    ring = KeyRing.from_toml(path)
    assert len(ring) == 2
    ops = ring.authenticate({"key": "ops-team"}, GET, NOW)
    assert ops == ApiKey(key="ops-team", microgrids=None, sign_secret=None)
    site = ring.authenticate(signed("site-7", "s3cret"), GET, NOW)
    assert site == ApiKey(key="site-7", microgrids=frozenset({7, 8}), sign_secret="s3cret")
    KeyRing.authorize(site, 8)
    assert api_error(lambda: KeyRing.authorize(site, 9)) == (
        "PERMISSION_DENIED",
        "the API key does not grant access to microgrid 9",
    )
    assert api_error(lambda: ring.authenticate({"key": "site-7"}, GET, NOW)) == (
        "UNAUTHENTICATED",
        "this key requires signed requests (ts, nonce, sig)",
    )


def test_from_toml_str_path_and_empty_file(tmp_path: Path) -> None:
    assert len(KeyRing.from_toml(str(write(tmp_path, "")))) == 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('keys = "ops"', "'keys' must be an array of tables"),
        ("keys = [1]", "keys[0] must be a table"),
        (
            '[[keys]]\nkey = "a"\n[[keys]]\nkey = "b"\nmicrogrid = [1]\nsecret = "x"',
            "keys[1] has unknown fields ['microgrid', 'secret']",
        ),
        ('[[keys]]\nkey = "a"\nmicrogrids = [-1]', "keys[0]: microgrids must be ids >= 0, got -1"),
        (
            '[[keys]]\nkey = "a"\nmicrogrids = ["7"]',
            "keys[0]: microgrids must be ids >= 0, got '7'",
        ),
        (
            '[[keys]]\nkey = "a"\nmicrogrids = [true]',
            "keys[0]: microgrids must be ids >= 0, got True",
        ),
        ('[[keys]]\nkey = "a"\nmicrogrids = 7', "keys[0]: microgrids must be a list of ids, got 7"),
        ("[[keys]]\nmicrogrids = [1]", "keys[0]: key must be a non-empty str"),
        ('[[keys]]\nkey = ""', "keys[0]: key must be a non-empty str"),
        (
            '[[keys]]\nkey = "a"\nsign_secret = ""',
            "keys[0]: sign_secret must be a non-empty str or None",
        ),
    ],
)
def test_from_toml_errors(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ValueError, match=f"^{re.escape(f'{path}: {message}')}$"):
        KeyRing.from_toml(path)


def test_constructor_checks() -> None:
    with pytest.raises(TypeError) as info:
        KeyRing(["plain"])  # type: ignore[list-item]
    assert str(info.value) == "keys must contain ApiKey items, got 'plain'"
    assert len(KeyRing.of("a", "b")) == 2


def test_api_key_repr_hides_secrets() -> None:
    text = repr(ApiKey(key="hunter2", microgrids=frozenset({1}), sign_secret="s3cret"))
    assert text == "ApiKey(microgrids=frozenset({1}))"


# -- KeyRing.authenticate / authorize -----------------------------------------------------


@pytest.fixture
def ring() -> KeyRing:
    return KeyRing(
        [
            ApiKey(key="plain"),
            ApiKey(key="grid-7", microgrids=frozenset({7})),
            ApiKey(key="signer", sign_secret="s3cret"),
        ]
    )


def test_plain_key_accepted(ring: KeyRing) -> None:
    api_key = ring.authenticate({"key": "plain"}, GET, NOW)
    assert api_key.key == "plain"
    for microgrid in (0, 1, 2**64 - 1):
        KeyRing.authorize(api_key, microgrid)


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ({}, "the request has no 'key' metadata"),
        ({"key": ""}, "the request has no 'key' metadata"),
        ({"ts": str(NOW_S)}, "the request has no 'key' metadata"),
        ({"key": "plan"}, "the API key is not valid"),
        ({"key": "plain "}, "the API key is not valid"),
        ({"key": "PLAIN"}, "the API key is not valid"),
    ],
)
def test_missing_or_wrong_key(ring: KeyRing, metadata: dict[str, str], message: str) -> None:
    assert api_error(lambda: ring.authenticate(metadata, GET, NOW)) == (
        "UNAUTHENTICATED",
        message,
    )


def test_microgrid_not_granted(ring: KeyRing) -> None:
    api_key = ring.authenticate({"key": "grid-7"}, GET, NOW)
    KeyRing.authorize(api_key, 7)
    assert api_error(lambda: KeyRing.authorize(api_key, 8)) == (
        "PERMISSION_DENIED",
        "the API key does not grant access to microgrid 8",
    )


def test_signed_request_accepted(ring: KeyRing) -> None:
    assert ring.authenticate(signed("signer", "s3cret"), GET, NOW).key == "signer"


def test_client_metadata_accepted(ring: KeyRing) -> None:
    metadata = auth_metadata("signer", b"s3cret", DELETE, now_s=NOW_S)
    assert ring.authenticate(metadata, DELETE, NOW).key == "signer"


@pytest.mark.parametrize("missing", ["ts", "nonce", "sig"])
def test_unsigned_request_for_signing_key(ring: KeyRing, missing: str) -> None:
    metadata = signed("signer", "s3cret")
    del metadata[missing]
    assert api_error(lambda: ring.authenticate(metadata, GET, NOW)) == (
        "UNAUTHENTICATED",
        "this key requires signed requests (ts, nonce, sig)",
    )
    assert api_error(lambda: ring.authenticate({"key": "signer"}, GET, NOW)) == (
        "UNAUTHENTICATED",
        "this key requires signed requests (ts, nonce, sig)",
    )


def test_ts_not_a_number(ring: KeyRing) -> None:
    metadata = {**signed("signer", "s3cret"), "ts": "noon"}
    assert api_error(lambda: ring.authenticate(metadata, GET, NOW)) == (
        "UNAUTHENTICATED",
        "'ts' must be Unix seconds, got 'noon'",
    )


@pytest.mark.parametrize(
    ("metadata", "why"),
    [
        (
            {
                "sig": expected_sig(
                    b"wrong", "signer", str(NOW_S), "bm9uY2U", "GetMicrogridDispatch"
                )
            },
            "secret",
        ),
        (
            {
                "sig": expected_sig(
                    b"s3cret", "signer", str(NOW_S), "bm9uY2U", "DeleteMicrogridDispatch"
                )
            },
            "method",
        ),
        ({"nonce": "b3RoZXI"}, "nonce"),
        ({"ts": str(NOW_S + 1)}, "ts"),
        ({"sig": "A" * 43}, "garbage"),
    ],
)
def test_bad_signature(ring: KeyRing, metadata: dict[str, str], why: str) -> None:
    tampered = {**signed("signer", "s3cret"), **metadata}
    assert api_error(lambda: ring.authenticate(tampered, GET, NOW)) == (
        "UNAUTHENTICATED",
        "the request signature is not valid",
    ), why


def test_signature_for_another_method(ring: KeyRing) -> None:
    metadata = signed("signer", "s3cret", method=GET)
    assert api_error(lambda: ring.authenticate(metadata, DELETE, NOW)) == (
        "UNAUTHENTICATED",
        "the request signature is not valid",
    )


@pytest.mark.parametrize("offset", [-301, 301, -3600, 86400])
def test_stale_ts(ring: KeyRing, offset: int) -> None:
    metadata = signed("signer", "s3cret", ts=NOW_S + offset)
    assert api_error(lambda: ring.authenticate(metadata, GET, NOW)) == (
        "UNAUTHENTICATED",
        f"'ts' is {abs(offset)} s away from the server's clock (at most 300 s allowed)",
    )


@pytest.mark.parametrize("offset", [-300, 300])
def test_ts_at_the_skew_limit_accepted(ring: KeyRing, offset: int) -> None:
    assert timedelta(seconds=abs(offset)) == MAX_CLOCK_SKEW
    metadata = signed("signer", "s3cret", ts=NOW_S + offset)
    assert ring.authenticate(metadata, GET, NOW).key == "signer"


def test_replayed_nonce(ring: KeyRing) -> None:
    metadata = signed("signer", "s3cret")
    ring.authenticate(metadata, GET, NOW)
    assert api_error(lambda: ring.authenticate(metadata, GET, NOW + timedelta(seconds=1))) == (
        "UNAUTHENTICATED",
        "the request nonce was used before (replay)",
    )
    # The same nonce with a fresh ts (and so a fresh signature) is still a replay.
    later = signed("signer", "s3cret", ts=NOW_S + 60)
    assert api_error(lambda: ring.authenticate(later, GET, NOW + timedelta(seconds=60))) == (
        "UNAUTHENTICATED",
        "the request nonce was used before (replay)",
    )


def test_nonce_remembered_per_key() -> None:
    ring = KeyRing([ApiKey(key="a", sign_secret="x"), ApiKey(key="b", sign_secret="y")])
    ring.authenticate(signed("a", "x", nonce="same"), GET, NOW)
    assert ring.authenticate(signed("b", "y", nonce="same"), GET, NOW).key == "b"


def test_nonce_forgotten_after_twice_the_skew(ring: KeyRing) -> None:
    ring.authenticate(signed("signer", "s3cret", nonce="once"), GET, NOW)
    much_later = NOW + 2 * MAX_CLOCK_SKEW + timedelta(seconds=1)
    metadata = signed("signer", "s3cret", nonce="once", ts=int(much_later.timestamp()))
    assert ring.authenticate(metadata, GET, much_later).key == "signer"


def test_rejected_signature_does_not_burn_the_nonce(ring: KeyRing) -> None:
    bad = {**signed("signer", "s3cret", nonce="fresh"), "sig": "A" * 43}
    api_error(lambda: ring.authenticate(bad, GET, NOW))
    assert ring.authenticate(signed("signer", "s3cret", nonce="fresh"), GET, NOW).key == "signer"
