"""The README's published test vectors."""

from keyward import EMPTY_BODY_SHA256, body_sha256, sign

SECRET = "kwsig_test_vector_secret"


def test_post_vector() -> None:
    signed = sign(SECRET, "POST", "/v1/messages?x=1", b'{"to":"+14155550100"}', timestamp=1764000000)
    assert signed.signature == "14f487c32538df7b82ea4b34e6d5483faf0cecf8afc55449880895de21dee51a"
    assert signed.headers() == {"X-Keyward-Timestamp": "1764000000", "X-Keyward-Signature": signed.signature}


def test_get_vector_with_an_empty_body() -> None:
    signed = sign(SECRET, "get", "/v1/templates/tpl_123", None, timestamp="1764000000")
    assert signed.signature == "c0f9d58f951d50014e9d1b29bbd488c40fe948298a0fbd801edc1b4d0abaeaed"
    assert body_sha256(b"") == EMPTY_BODY_SHA256 == body_sha256(None)


def test_configured_header_names() -> None:
    signed = sign(SECRET, "GET", "/", timestamp=1)
    assert set(signed.headers("X-SigFollow-Signature", "X-SigFollow-Timestamp")) == {
        "X-SigFollow-Signature", "X-SigFollow-Timestamp"}
