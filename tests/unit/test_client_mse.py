"""MSE/PE handshake core: an initiator and a responder joined by a fake link."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, replace

import pytest
from cryptography.hazmat.decrepit.ciphers.algorithms import ARC4
from cryptography.hazmat.primitives.ciphers import Cipher
from hypothesis import given, settings
from hypothesis import strategies as st

from client.core.mse import (
    CRYPTO_PLAINTEXT,
    CRYPTO_RC4,
    DH_PRIME,
    KEY_BYTES,
    EncryptionPolicy,
    HandshakeKind,
    MseEstablished,
    MseInitiator,
    MseResponder,
    MseState,
    RC4Stream,
    detect_handshake,
    private_key_from_secret,
    public_key,
)
from client.errors import LocalPeerProtocolError, RemotePeerProtocolError

SKEY = hashlib.sha1(b"the torrent").digest()
OTHERS = [hashlib.sha1(b"other %d" % i).digest() for i in range(5)]
IA = b"\x13BitTorrent protocol" + bytes(8) + SKEY + b"-BS0001-abcdefghijkl"


def _key(rng: random.Random) -> int:
    return private_key_from_secret(rng.randbytes(20))


def _prefer_rc4(provide: int) -> int | None:
    if provide & CRYPTO_RC4:
        return CRYPTO_RC4
    return CRYPTO_PLAINTEXT if provide & CRYPTO_PLAINTEXT else None


def _prefer_plain(provide: int) -> int | None:
    if provide & CRYPTO_PLAINTEXT:
        return CRYPTO_PLAINTEXT
    return CRYPTO_RC4 if provide & CRYPTO_RC4 else None


@dataclass
class Pair:
    a: MseInitiator
    b: MseResponder


def make_pair(
    *,
    seed: int = 1,
    pad_len: int = 0,
    provide: int = CRYPTO_RC4 | CRYPTO_PLAINTEXT,
    select: object = _prefer_rc4,
    skey: bytes = SKEY,
    skeys: list[bytes] | None = None,
    initial_payload: bytes = IA,
) -> Pair:
    rng = random.Random(seed)
    a = MseInitiator(
        skey=skey,
        initial_payload=initial_payload,
        crypto_provide=provide,
        private_key=_key(rng),
        pad=rng.randbytes(pad_len),
        pad_c=rng.randbytes(pad_len),
    )
    b = MseResponder(
        skeys=[*OTHERS[:2], SKEY, *OTHERS[2:]] if skeys is None else skeys,
        crypto_select=select,  # type: ignore[arg-type]  # test callables
        private_key=_key(rng),
        pad=rng.randbytes(pad_len),
        pad_d=rng.randbytes(pad_len),
    )
    return Pair(a=a, b=b)


def _feed(
    core: MseInitiator | MseResponder, data: bytes, chunk: int | None
) -> list[MseEstablished]:
    """Feed in chunks the way a driver does: once established, later reads
    go through decrypt(); they are folded into the event's remainder."""
    if chunk is None:
        return core.receive_data(data)
    events: list[MseEstablished] = []
    later = b""
    for i in range(0, len(data), chunk):
        piece = data[i : i + chunk]
        if events:
            later += core.decrypt(piece)
        else:
            events += core.receive_data(piece)
    return [replace(e, remainder=e.remainder + later) for e in events]


def run_handshake(
    pair: Pair, *, chunk: int | None = None, after_a: bytes = b"", after_b: bytes = b""
) -> tuple[MseEstablished, MseEstablished, bytes, bytes]:
    """Shuttle bytes until both sides are established.

    ``after_b`` is sent by B right after its step 4 (in the same read as the
    handshake, so it lands in A's remainder); likewise ``after_a``.
    Returns both events and the raw wire bytes each side sent.
    """
    a, b = pair.a, pair.b
    wire_ab = a.initial_bytes()
    assert b.initial_bytes() == b""  # B speaks only after Ya
    ev_b = _feed(b, wire_ab, chunk)
    assert ev_b == []
    wire_ba = b.data_to_send()
    assert len(wire_ba) >= KEY_BYTES
    ev_a = _feed(a, wire_ba, chunk)
    assert ev_a == []
    step3 = a.data_to_send()
    wire_ab += step3
    ev_b = _feed(b, step3, chunk)
    assert len(ev_b) == 1
    step4 = b.data_to_send() + b.encrypt(after_b)
    wire_ba += step4
    ev_a = _feed(a, step4, chunk)
    assert len(ev_a) == 1
    assert a.state is MseState.ESTABLISHED
    assert b.state is MseState.ESTABLISHED
    if after_a:
        wire_ab += a.encrypt(after_a)
    return ev_a[0], ev_b[0], wire_ab, wire_ba


@pytest.mark.parametrize("pad_len", [0, 512])
@pytest.mark.parametrize(
    ("provide", "select", "expected"),
    [
        (CRYPTO_RC4 | CRYPTO_PLAINTEXT, _prefer_rc4, CRYPTO_RC4),
        (CRYPTO_RC4, _prefer_rc4, CRYPTO_RC4),
        (CRYPTO_RC4 | CRYPTO_PLAINTEXT, _prefer_plain, CRYPTO_PLAINTEXT),
        (CRYPTO_PLAINTEXT, _prefer_rc4, CRYPTO_PLAINTEXT),
    ],
)
def test_handshake_whole_and_byte_by_byte(
    pad_len: int, provide: int, select: object, expected: int
) -> None:
    results = []
    for chunk in (None, 1, 7):
        pair = make_pair(pad_len=pad_len, provide=provide, select=select)
        ev_a, ev_b, wire_ab, wire_ba = run_handshake(
            pair, chunk=chunk, after_b=b"B's handshake"
        )
        assert ev_a.selected == ev_b.selected == expected
        assert ev_a.skey == ev_b.skey == SKEY
        assert ev_b.initial_payload == IA
        assert ev_a.initial_payload == b""
        assert ev_a.remainder == b"B's handshake"
        assert ev_b.remainder == b""
        # The IA never crosses the wire in the clear.
        assert IA not in wire_ab
        # After the handshake both directions work.
        msg = b"\x00\x00\x00\x05\x04\x00\x00\x00\x07" * 50
        assert pair.b.decrypt(pair.a.encrypt(msg)) == msg
        assert pair.a.decrypt(pair.b.encrypt(msg)) == msg
        on_wire = pair.a.encrypt(msg)
        assert (on_wire == msg) is (expected == CRYPTO_PLAINTEXT)
        results.append((ev_a, ev_b, wire_ab, wire_ba))
    assert results[0] == results[1] == results[2]


def test_plaintext_mode_stream_after_handshake_is_plain() -> None:
    pair = make_pair(provide=CRYPTO_PLAINTEXT)
    ev_a, _, _, wire_ba = run_handshake(pair, after_b=b"plain after padD")
    assert ev_a.selected == CRYPTO_PLAINTEXT
    assert wire_ba.endswith(b"plain after padD")
    assert pair.a.encrypt(b"hello") == b"hello"


def test_rc4_mode_stream_after_handshake_is_encrypted() -> None:
    pair = make_pair(provide=CRYPTO_RC4)
    ev_a, _, _, wire_ba = run_handshake(pair, after_b=b"secret after padD")
    assert ev_a.remainder == b"secret after padD"
    assert b"secret" not in wire_ba


def test_padding_lengths_on_wire() -> None:
    pair = make_pair(pad_len=512)
    assert len(pair.a.initial_bytes()) == KEY_BYTES + 512


def test_responder_remainder_after_ia() -> None:
    # The IA and anything A pipelines after it (only legal once A knows the
    # selection, but the core must not lose it) arrive in one read.
    pair = make_pair(provide=CRYPTO_RC4, initial_payload=b"")
    b_in = pair.b.receive_data(pair.a.initial_bytes())
    assert b_in == []
    pair.a.receive_data(pair.b.data_to_send())
    step3 = pair.a.data_to_send()
    [ev_b] = pair.b.receive_data(step3)
    assert ev_b.initial_payload == b""
    [ev_a] = pair.a.receive_data(pair.b.data_to_send())
    assert ev_a.selected == CRYPTO_RC4
    assert pair.b.decrypt(pair.a.encrypt(IA)) == IA


def test_responder_finds_skey_among_many() -> None:
    for target in OTHERS:
        pair = make_pair(skey=target)
        ev_a, ev_b, _, _ = run_handshake(pair)
        assert ev_b.skey == target
        assert pair.b.skey == target
        assert ev_a.skey == target


def test_wrong_skey_is_refused() -> None:
    pair = make_pair(skeys=OTHERS)
    pair.b.receive_data(pair.a.initial_bytes())
    pair.a.receive_data(pair.b.data_to_send())
    with pytest.raises(RemotePeerProtocolError, match="torrent we do not serve"):
        pair.b.receive_data(pair.a.data_to_send())
    assert pair.b.state is MseState.ERROR
    with pytest.raises(LocalPeerProtocolError):
        pair.b.receive_data(b"more")


def test_require_rc4_refuses_plaintext_only_initiator() -> None:
    pair = make_pair(provide=CRYPTO_PLAINTEXT, select=EncryptionPolicy.REQUIRE.select)
    pair.b.receive_data(pair.a.initial_bytes())
    pair.a.receive_data(pair.b.data_to_send())
    with pytest.raises(RemotePeerProtocolError) as info:
        pair.b.receive_data(pair.a.data_to_send())
    assert "crypto_provide 0x01 (plaintext)" in str(info.value)
    assert "encryption policy" in str(info.value)
    assert pair.b.data_to_send() == b""  # no step 4 for a refused peer


def test_initiator_refuses_selection_it_did_not_offer() -> None:
    pair = make_pair(provide=CRYPTO_RC4, select=lambda _p: CRYPTO_PLAINTEXT)
    pair.b.receive_data(pair.a.initial_bytes())
    pair.a.receive_data(pair.b.data_to_send())
    # Our responder refuses to pick an unoffered method (a local bug) ...
    with pytest.raises(LocalPeerProtocolError):
        pair.b.receive_data(pair.a.data_to_send())


def test_initiator_refuses_unknown_selection() -> None:
    # ... so forge B's step 4 by hand with a bogus crypto_select.
    rng = random.Random(5)
    a = MseInitiator(
        skey=SKEY,
        initial_payload=IA,
        crypto_provide=CRYPTO_RC4,
        private_key=_key(rng),
        pad=b"",
    )
    b_key = _key(rng)
    a_pub = a.initial_bytes()[:KEY_BYTES]
    a.receive_data(public_key(b_key))
    a.data_to_send()
    secret = pow(int.from_bytes(a_pub, "big"), b_key, DH_PRIME).to_bytes(96, "big")
    enc = RC4Stream(hashlib.sha1(b"keyB" + secret + SKEY).digest())
    step4 = enc.update(bytes(8) + (4).to_bytes(4, "big") + (0).to_bytes(2, "big"))
    with pytest.raises(RemotePeerProtocolError, match="selected crypto 0x04"):
        a.receive_data(step4)


def test_initiator_gives_up_without_vc() -> None:
    pair = make_pair()
    pair.a.initial_bytes()
    pair.a.receive_data(public_key(_key(random.Random(9))) + bytes(519))
    with pytest.raises(RemotePeerProtocolError, match="within 616 bytes"):
        pair.a.receive_data(b"\x01")


def test_responder_gives_up_without_req1() -> None:
    pair = make_pair()
    pair.b.receive_data(pair.a.initial_bytes())
    assert pair.b.state is MseState.SYNCHRONIZING
    with pytest.raises(RemotePeerProtocolError, match="no req1 hash within 628 bytes"):
        pair.b.receive_data(bytes(600))


def test_degenerate_public_key_refused() -> None:
    pair = make_pair()
    with pytest.raises(RemotePeerProtocolError, match="public key is out of range"):
        pair.b.receive_data((1).to_bytes(96, "big"))


def test_close_during_handshake() -> None:
    pair = make_pair()
    with pytest.raises(RemotePeerProtocolError, match="closed"):
        pair.a.receive_data(b"")


def test_stream_methods_need_establishment() -> None:
    pair = make_pair()
    with pytest.raises(LocalPeerProtocolError, match="not finished"):
        pair.a.encrypt(b"x")
    run_handshake(pair)
    with pytest.raises(LocalPeerProtocolError, match="use decrypt"):
        pair.a.receive_data(b"x")


def test_decrypt_into_matches_decrypt() -> None:
    p1, p2 = make_pair(provide=CRYPTO_RC4), make_pair(provide=CRYPTO_RC4)
    run_handshake(p1)
    run_handshake(p2)
    wire = p1.a.encrypt(b"block data" * 100)
    assert wire == p2.a.encrypt(b"block data" * 100)
    buf = bytearray(wire)
    p1.b.decrypt_into(memoryview(buf))
    assert bytes(buf) == p2.b.decrypt(wire) == b"block data" * 100


def test_bad_arguments() -> None:
    with pytest.raises(LocalPeerProtocolError):
        MseInitiator(
            skey=b"short",
            initial_payload=b"",
            crypto_provide=CRYPTO_RC4,
            private_key=12345,
            pad=b"",
        )
    with pytest.raises(LocalPeerProtocolError, match="at most 512"):
        MseResponder(
            skeys=[SKEY], crypto_select=_prefer_rc4, private_key=12345, pad=bytes(513)
        )
    with pytest.raises(LocalPeerProtocolError):
        MseInitiator(
            skey=SKEY,
            initial_payload=b"",
            crypto_provide=0x04,
            private_key=12345,
            pad=b"",
        )
    with pytest.raises(LocalPeerProtocolError):
        private_key_from_secret(b"\0" * 20)


def test_rc4_keystream_discards_1024_bytes() -> None:
    key = b"known answer key"
    reference = Cipher(ARC4(key), mode=None).encryptor()
    keystream = reference.update(bytes(1024 + 64))
    stream = RC4Stream(key)
    assert stream.update(bytes(40)) + stream.update(bytes(24)) == keystream[1024:]
    # And the known answer of RC4 itself (RFC 6229, 40-bit key 0102030405,
    # offset 1024): the wrapper starts exactly there.
    rfc = RC4Stream(bytes([1, 2, 3, 4, 5]))
    assert rfc.update(bytes(16)).hex() == "30abbcc7c20b01609f23ee2d5f6bb7df"


def test_policies() -> None:
    prefer, require, off = (
        EncryptionPolicy.PREFER,
        EncryptionPolicy.REQUIRE,
        EncryptionPolicy.OFF,
    )
    assert EncryptionPolicy("prefer") is prefer
    assert prefer.crypto_provide == CRYPTO_RC4 | CRYPTO_PLAINTEXT
    assert require.crypto_provide == CRYPTO_RC4
    assert off.crypto_provide == 0
    assert prefer.select(CRYPTO_RC4 | CRYPTO_PLAINTEXT) == CRYPTO_PLAINTEXT
    assert prefer.select(CRYPTO_RC4) == CRYPTO_RC4
    assert prefer.select(CRYPTO_PLAINTEXT) == CRYPTO_PLAINTEXT
    assert require.select(CRYPTO_PLAINTEXT) is None
    assert require.select(CRYPTO_RC4 | CRYPTO_PLAINTEXT) == CRYPTO_RC4
    assert off.select(CRYPTO_RC4) is None
    assert prefer.select(0x04) is None
    assert prefer.accepts_plaintext_handshake
    assert not require.accepts_plaintext_handshake
    assert off.accepts_plaintext_handshake
    assert not off.accepts_encrypted_handshake


def test_detect_handshake() -> None:
    assert detect_handshake(IA) is HandshakeKind.PLAINTEXT
    assert detect_handshake(IA[:20]) is HandshakeKind.PLAINTEXT
    assert detect_handshake(b"") is HandshakeKind.UNDECIDED
    assert detect_handshake(IA[:5]) is HandshakeKind.UNDECIDED
    assert detect_handshake(b"\x13BitTorrent protocoX") is HandshakeKind.ENCRYPTED
    assert detect_handshake(b"\x12") is HandshakeKind.ENCRYPTED
    pair = make_pair()
    ya = pair.a.initial_bytes()
    assert detect_handshake(memoryview(ya)[:20]) is HandshakeKind.ENCRYPTED


@settings(max_examples=150, deadline=None)
@given(chunks=st.lists(st.binary(max_size=700), max_size=4))
def test_responder_fuzz_raises_only_remote_errors(chunks: list[bytes]) -> None:
    b = MseResponder(
        skeys=[SKEY],
        crypto_select=_prefer_rc4,
        private_key=_key(random.Random(3)),
        pad=b"",
    )
    try:
        for chunk in chunks:
            if chunk:
                assert b.receive_data(chunk) == []
    except RemotePeerProtocolError:
        assert b.state is MseState.ERROR


@settings(max_examples=100, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    pad_len=st.integers(0, 512),
    cut=st.lists(st.integers(1, 300), min_size=1, max_size=8),
)
def test_any_split_gives_same_result(seed: int, pad_len: int, cut: list[int]) -> None:
    ref = run_handshake(make_pair(seed=seed, pad_len=pad_len), after_b=b"xyz")
    pair = make_pair(seed=seed, pad_len=pad_len)
    a, b = pair.a, pair.b

    def feed_split(
        core: MseInitiator | MseResponder, data: bytes
    ) -> list[MseEstablished]:
        events: list[MseEstablished] = []
        later = b""
        i = k = 0
        while i < len(data):
            n = cut[k % len(cut)]
            if events:
                later += core.decrypt(data[i : i + n])
            else:
                events += core.receive_data(data[i : i + n])
            i += n
            k += 1
        return [replace(e, remainder=e.remainder + later) for e in events]

    assert feed_split(b, a.initial_bytes()) == []
    assert feed_split(a, b.data_to_send()) == []
    [ev_b] = feed_split(b, a.data_to_send())
    [ev_a] = feed_split(a, b.data_to_send() + b.encrypt(b"xyz"))
    assert (ev_a, ev_b) == ref[:2]


@settings(max_examples=100, deadline=None)
@given(
    data=st.data(),
    pad_len=st.sampled_from([0, 3, 512]),
    provide=st.sampled_from([CRYPTO_RC4, CRYPTO_PLAINTEXT, 3]),
)
def test_mutated_handshake_raises_only_remote_errors(
    data: st.DataObject, pad_len: int, provide: int
) -> None:
    # Random bytes never get past req1; corrupting a real handshake reaches
    # the SKEY, VC, crypto_provide, PadC and IA parsing on both sides.
    pair = make_pair(pad_len=pad_len, provide=provide)
    a, b = pair.a, pair.b
    ya = a.initial_bytes()
    b.receive_data(ya)
    a.receive_data(b.data_to_send())
    step3 = bytearray(a.data_to_send())
    at = data.draw(st.integers(0, len(step3) - 1))
    step3[at] ^= data.draw(st.integers(1, 255))
    cut = data.draw(st.integers(0, len(step3)))
    try:
        events = b.receive_data(bytes(step3[:cut]))
    except RemotePeerProtocolError:
        assert b.state is MseState.ERROR
        return
    if not events:
        return
    step4 = bytearray(b.data_to_send())
    at = data.draw(st.integers(0, len(step4) - 1))
    step4[at] ^= data.draw(st.integers(1, 255))
    try:
        a.receive_data(bytes(step4))
    except RemotePeerProtocolError:
        assert a.state is MseState.ERROR


@settings(max_examples=50, deadline=None)
@given(chunks=st.lists(st.binary(max_size=700), max_size=4))
def test_initiator_fuzz_raises_only_remote_errors(chunks: list[bytes]) -> None:
    a = make_pair().a
    a.initial_bytes()
    try:
        for chunk in chunks:
            if chunk:
                assert a.receive_data(chunk) == []
    except RemotePeerProtocolError:
        assert a.state is MseState.ERROR
