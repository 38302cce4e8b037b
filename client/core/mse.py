"""Message Stream Encryption / Protocol Encryption (MSE/PE) handshake, as a
sans-I/O stream core, plus the RC4 stream wrapper used after it.

Spec: the Vuze/Azureus "Message Stream Encryption" page (the de facto
specification; no BEP covers it). Names below follow it: Ya/Yb, PadA..PadD,
S, SKEY (the infohash), VC, crypto_provide/crypto_select, IA.

Theory of operation
-------------------
The handshake has five steps; A is the side that opened the connection::

    1 A->B: Ya, PadA
    2 B->A: Yb, PadB
    3 A->B: HASH('req1', S), HASH('req2', SKEY) xor HASH('req3', S),
            ENCRYPT(VC, crypto_provide, len(PadC), PadC, len(IA)), ENCRYPT(IA)
    4 B->A: ENCRYPT(VC, crypto_select, len(PadD), PadD), ENCRYPT2(payload)
    5 A->B: ENCRYPT2(payload)

Y is ``G**x mod P`` as 96 big-endian bytes; S is the Diffie-Hellman secret,
also 96 bytes. ENCRYPT is RC4 keyed with ``HASH('keyA', S, SKEY)`` for A->B
and ``HASH('keyB', S, SKEY)`` for B->A, the first 1024 keystream bytes
discarded. ENCRYPT2 is the selected method: RC4 continuing the same streams,
or plaintext (then only the handshake itself was encrypted).

Because the pads have unknown lengths, each side *synchronizes*: B scans A's
bytes after Ya for HASH('req1', S), which must end within 96 + 512 + 20 = 628
bytes; A scans B's bytes after Yb for the 8 bytes ENCRYPT(VC) (VC is eight
zero bytes, so they are the first 8 bytes of B's keystream), which must end
within 96 + 512 + 8 = 616 bytes.

States (:class:`MseState`): ``AWAIT_PUBLIC_KEY`` until the peer's 96-byte Y
arrived; ``SYNCHRONIZING`` while scanning for req1 (B) or ENCRYPT(VC) (A);
``NEGOTIATING`` while the fixed fields, pads and IA arrive; ``ESTABLISHED``
once :class:`MseEstablished` was returned, after which the driver wraps its
transport with :meth:`encrypt`/:meth:`decrypt` and feeds the core no more
bytes; ``ERROR`` after the peer sent something illegal (every later call
raises :class:`~client.errors.LocalPeerProtocolError`).

Who speaks first: A writes Ya + PadA on connect (:meth:`MseInitiator.
initial_bytes`). B writes Yb + PadB only after Ya arrived, not on accept:
an incoming connection is not known to be MSE until its first bytes were
told apart from a plaintext BitTorrent handshake (:func:`detect_handshake`),
and a plaintext peer would take unsolicited bytes for garbage.

Deliberately left out: the spec's optional early-termination timeouts (the
driver owns the clock); PadC/PadD content is whatever the caller passes
(the spec reserves them; clients send them empty), and incoming PadC/PadD
content is ignored.
"""

from __future__ import annotations

import enum
import hashlib
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from cryptography.hazmat.decrepit.ciphers.algorithms import ARC4
from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext

from client.errors import (
    LocalPeerProtocolError,
    PeerProtocolError,
    RemotePeerProtocolError,
)

__all__ = [
    "CRYPTO_PLAINTEXT",
    "CRYPTO_RC4",
    "DH_GENERATOR",
    "DH_PRIME",
    "KEY_BYTES",
    "MAX_PAD_BYTES",
    "PRIVATE_KEY_BITS",
    "RC4_DISCARD_BYTES",
    "EncryptionPolicy",
    "HandshakeKind",
    "MseEstablished",
    "MseEvent",
    "MseInitiator",
    "MseResponder",
    "MseState",
    "RC4Stream",
    "describe_crypto",
    "detect_handshake",
    "private_key_from_secret",
    "public_key",
]

# The spec's 768-bit Diffie-Hellman group (the Oakley group 1 prime) and G.
DH_PRIME = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74"
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437"
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A63A36210000000000090563",
    16,
)
DH_GENERATOR = 2
KEY_BYTES = 96  # Ya, Yb and S on the wire: 768 bits, big-endian (spec)
PRIVATE_KEY_BITS = 160  # the spec's recommended private exponent size
MAX_PAD_BYTES = 512  # PadA..PadD are 0..512 bytes (spec)
RC4_DISCARD_BYTES = 1024  # keystream bytes dropped before use (spec)
VC = bytes(8)  # verification constant: 8 zero bytes (spec)
HASH_BYTES = 20  # SHA-1
MAX_IA_BYTES = 0xFFFF  # len(IA) is a 2-byte field

CRYPTO_PLAINTEXT = 0x01  # crypto_provide/select bit: plaintext after handshake
CRYPTO_RC4 = 0x02  # crypto_provide/select bit: RC4 for the whole stream
_KNOWN_CRYPTO = CRYPTO_PLAINTEXT | CRYPTO_RC4

# Synchronization limits, counted from the start of the peer's stream.
REQ1_SYNC_LIMIT = KEY_BYTES + MAX_PAD_BYTES + HASH_BYTES  # 628 (B scanning A)
VC_SYNC_LIMIT = KEY_BYTES + MAX_PAD_BYTES + len(VC)  # 616 (A scanning B)

_PROTOCOL_HEADER = b"\x13BitTorrent protocol"  # BEP 3 pstrlen + pstr
_U16 = struct.Struct(">H")
_PROVIDE = struct.Struct(">8sIH")  # VC, crypto_provide/select, len(Pad)
_SELECT = struct.Struct(">IH")  # crypto_select, len(PadD), after ENCRYPT(VC)


def _hash(*parts: bytes) -> bytes:
    return hashlib.sha1(b"".join(parts)).digest()


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def describe_crypto(bits: int) -> str:
    """``0x03 (plaintext, rc4)``: a crypto_provide/select value for messages."""
    names = []
    if bits & CRYPTO_PLAINTEXT:
        names.append("plaintext")
    if bits & CRYPTO_RC4:
        names.append("rc4")
    if bits & ~_KNOWN_CRYPTO:
        names.append("unknown")
    return f"0x{bits:02x} ({', '.join(names) or 'none'})"


# -- RC4 ---------------------------------------------------------------------


class RC4Stream:
    """One direction of an RC4 stream, the first 1024 keystream bytes
    discarded (MSE's RC4-drop1024). Encryption and decryption are the same
    operation; each call continues the keystream where the last one ended.
    """

    __slots__ = ("_ctx",)

    def __init__(self, key: bytes) -> None:
        self._ctx: CipherContext = Cipher(ARC4(key), mode=None).encryptor()
        self._ctx.update(bytes(RC4_DISCARD_BYTES))

    def update(self, data: bytes | bytearray | memoryview) -> bytes:
        """Encrypt (or decrypt) ``data``, returning new bytes."""
        return self._ctx.update(data)

    def update_into(self, buf: bytearray | memoryview) -> None:
        """Encrypt (or decrypt) a writable buffer in place, without a copy
        (for a driver that receives straight into its buffers)."""
        self._ctx.update_into(buf, buf)


# -- Diffie-Hellman ------------------------------------------------------------


def private_key_from_secret(secret: bytes) -> int:
    """A private exponent from 20 random bytes (``secrets.token_bytes(20)``).

    Raises:
        LocalPeerProtocolError: ``secret`` is not 20 bytes, or gives a
            degenerate exponent (0 or 1).
    """
    if len(secret) != PRIVATE_KEY_BITS // 8:
        raise LocalPeerProtocolError(
            f"mse: private key secret must be {PRIVATE_KEY_BITS // 8} bytes,"
            f" not {len(secret)}"
        )
    key = int.from_bytes(secret, "big")
    if key < 2:
        raise LocalPeerProtocolError("mse: degenerate private key")
    return key


def public_key(private_key: int) -> bytes:
    """``G**private_key mod P`` as the 96 big-endian bytes sent on the wire."""
    return pow(DH_GENERATOR, private_key, DH_PRIME).to_bytes(KEY_BYTES, "big")


def _check_private_key(private_key: int) -> None:
    if not 2 <= private_key < DH_PRIME - 1:
        raise LocalPeerProtocolError("mse: private key out of range")


def _check_pad(name: str, pad: bytes) -> None:
    if len(pad) > MAX_PAD_BYTES:
        raise LocalPeerProtocolError(
            f"mse: {name} is {len(pad)} bytes; at most {MAX_PAD_BYTES}"
        )


def _shared_secret(peer_key: bytes, private_key: int) -> bytes:
    y = int.from_bytes(peer_key, "big")
    # 0, 1 and P-1 (and anything >= P) would make S guessable or undefined.
    if not 2 <= y < DH_PRIME - 1:
        raise RemotePeerProtocolError("mse: peer's public key is out of range")
    return pow(y, private_key, DH_PRIME).to_bytes(KEY_BYTES, "big")


# -- plaintext or MSE? ---------------------------------------------------------


class HandshakeKind(enum.Enum):
    PLAINTEXT = enum.auto()  #: starts with the BEP 3 ``\x13BitTorrent protocol``
    ENCRYPTED = enum.auto()  #: anything else: treat as MSE (Ya first)
    UNDECIDED = enum.auto()  #: a proper prefix of the BEP 3 header; read more


def detect_handshake(prefix: bytes | bytearray | memoryview) -> HandshakeKind:
    """Tell an incoming plaintext BitTorrent handshake from an MSE one.

    A random Ya starts with the 20-byte BEP 3 header with probability 2**-160,
    so the first bytes decide; ``UNDECIDED`` means they are a proper prefix of
    that header and at most 19 bytes long, so more are needed.
    """
    head = bytes(prefix[: len(_PROTOCOL_HEADER)])
    if head == _PROTOCOL_HEADER:
        return HandshakeKind.PLAINTEXT
    if _PROTOCOL_HEADER.startswith(head):
        return HandshakeKind.UNDECIDED
    return HandshakeKind.ENCRYPTED


class EncryptionPolicy(enum.Enum):
    """The ``--encryption`` option.

    ``prefer``: MSE handshake outgoing offering RC4 and plaintext; as the
    responder pick plaintext when the peer offers both (libtorrent's default,
    ``prefer_rc4`` off: the handshake is obfuscated, the payload is not, and
    RC4 on every byte cost 26-28% of both sides' CPU in a 1 GiB loopback
    transfer, 135 vs 235 MB/s), RC4 when it offers only RC4; plain incoming
    handshakes are accepted too. ``require``: RC4 only, both ways; plain
    handshakes and plaintext-only MSE peers are refused. ``off``: no MSE;
    outgoing connections are plain and encrypted incoming ones refused.
    """

    PREFER = "prefer"  #: MSE when possible, accept plain peers
    REQUIRE = "require"  #: RC4 or nothing
    OFF = "off"  #: plaintext BitTorrent only

    @property
    def crypto_provide(self) -> int:
        """crypto_provide for an outgoing MSE handshake (0: don't use MSE)."""
        match self:
            case EncryptionPolicy.PREFER:
                return CRYPTO_RC4 | CRYPTO_PLAINTEXT
            case EncryptionPolicy.REQUIRE:
                return CRYPTO_RC4
            case EncryptionPolicy.OFF:
                return 0

    @property
    def accepts_plaintext_handshake(self) -> bool:
        """Whether an incoming plain BEP 3 handshake is acceptable."""
        return self is not EncryptionPolicy.REQUIRE

    @property
    def accepts_encrypted_handshake(self) -> bool:
        """Whether an incoming MSE handshake should be answered."""
        return self is not EncryptionPolicy.OFF

    def select(self, crypto_provide: int) -> int | None:
        """crypto_select for a peer's crypto_provide, or None to refuse."""
        if self is EncryptionPolicy.OFF:
            return None
        if self is EncryptionPolicy.PREFER and crypto_provide & CRYPTO_PLAINTEXT:
            return CRYPTO_PLAINTEXT
        if crypto_provide & CRYPTO_RC4:
            return CRYPTO_RC4
        return None


# -- events and state ----------------------------------------------------------


class MseState(enum.Enum):
    AWAIT_PUBLIC_KEY = enum.auto()  #: waiting for the peer's 96-byte Y
    SYNCHRONIZING = enum.auto()  #: scanning for req1 (B) or ENCRYPT(VC) (A)
    NEGOTIATING = enum.auto()  #: reading the fixed fields, pads and IA
    ESTABLISHED = enum.auto()  #: done; use encrypt()/decrypt()
    ERROR = enum.auto()  #: the peer sent something illegal; close


@dataclass(frozen=True, slots=True, kw_only=True)
class MseEstablished:
    """The handshake finished.

    ``initial_payload`` is the IA the responder received (decrypted; empty on
    the initiator's side). ``remainder`` holds stream bytes that arrived in
    the same data after the handshake, already decrypted if RC4 was
    selected: feed it to the peer-wire core before anything else.
    """

    selected: int
    skey: bytes
    initial_payload: bytes
    remainder: bytes


MseEvent = MseEstablished


# -- the common machinery --------------------------------------------------------


class _MseEndpoint:
    """Buffering, failure and post-handshake stream handling shared by A and B.

    The receive buffer holds only the handshake (bounded by the sync limits,
    the 2-byte lengths and MAX_PAD_BYTES); ``_pos`` is the first unparsed
    byte, and fields are parsed by offset without re-slicing the buffer.
    """

    def __init__(self, *, private_key: int, pad: bytes) -> None:
        _check_private_key(private_key)
        _check_pad("pad", pad)
        self._private_key = private_key
        self._outgoing = bytearray(public_key(private_key) + pad)
        self._buf = bytearray()
        self._pos = 0
        self._state = MseState.AWAIT_PUBLIC_KEY
        self._secret = b""
        self._skey = b""
        self._selected = 0
        # RC4 streams for our outgoing and the peer's incoming bytes; after
        # the handshake they stay in use only when RC4 was selected.
        self._encryptor: RC4Stream | None = None
        self._decryptor: RC4Stream | None = None

    # -- read-only state -------------------------------------------------------
    @property
    def state(self) -> MseState:
        return self._state

    @property
    def selected(self) -> int:
        """The crypto method in force (0 until established)."""
        return self._selected

    @property
    def skey(self) -> bytes:
        """SKEY (the infohash) the handshake was for (empty until known)."""
        return self._skey

    # -- sending ---------------------------------------------------------------
    def data_to_send(self) -> bytes:
        """Bytes to write to the peer now (and forget)."""
        out = bytes(self._outgoing)
        self._outgoing.clear()
        return out

    def initial_bytes(self) -> bytes:
        """What to write as soon as the connection is up: the same as
        :meth:`data_to_send` at that moment."""
        return self.data_to_send()

    # -- after the handshake -----------------------------------------------------
    def encrypt(self, data: bytes | bytearray | memoryview) -> bytes:
        """Bytes to send for ``data`` (identity in plaintext mode).

        Raises:
            LocalPeerProtocolError: the handshake has not finished.
        """
        self._check_established()
        if self._selected == CRYPTO_RC4:
            assert self._encryptor is not None  # set when RC4 is selected
            return self._encryptor.update(data)
        return bytes(data)

    def decrypt(self, data: bytes | bytearray | memoryview) -> bytes:
        """Plain bytes for received ``data`` (identity in plaintext mode).

        Raises:
            LocalPeerProtocolError: the handshake has not finished.
        """
        self._check_established()
        if self._selected == CRYPTO_RC4:
            assert self._decryptor is not None  # set when RC4 is selected
            return self._decryptor.update(data)
        return bytes(data)

    def decrypt_into(self, buf: bytearray | memoryview) -> None:
        """Decrypt received bytes in place (no-op in plaintext mode).

        Raises:
            LocalPeerProtocolError: the handshake has not finished.
        """
        self._check_established()
        if self._selected == CRYPTO_RC4:
            assert self._decryptor is not None  # set when RC4 is selected
            self._decryptor.update_into(buf)

    # -- receiving -------------------------------------------------------------
    def receive_data(self, data: bytes | bytearray | memoryview) -> list[MseEvent]:
        """Feed bytes from the peer; ``b""`` means the peer closed.

        Returns:
            ``[MseEstablished(...)]`` once the handshake completes, else
            ``[]``. Check :meth:`data_to_send` after every call.

        Raises:
            RemotePeerProtocolError: the peer broke the handshake (or closed
                before it finished).
            LocalPeerProtocolError: called after establishment or failure.
        """
        if self._state is MseState.ERROR:
            raise LocalPeerProtocolError("mse: handshake already failed")
        if self._state is MseState.ESTABLISHED:
            raise LocalPeerProtocolError(
                "mse: handshake finished; use decrypt() for stream bytes"
            )
        if not data:
            self._state = MseState.ERROR
            raise RemotePeerProtocolError(
                "mse: peer closed the connection during the encryption handshake"
            )
        self._buf += data
        try:
            event = self._advance()
        except PeerProtocolError:
            self._state = MseState.ERROR
            raise
        return [] if event is None else [event]

    def _advance(self) -> MseEstablished | None:
        raise NotImplementedError

    # -- helpers ---------------------------------------------------------------
    def _available(self) -> int:
        return len(self._buf) - self._pos

    def _take(self, n: int) -> bytes:
        out = bytes(self._buf[self._pos : self._pos + n])
        self._pos += n
        return out

    def _take_decrypted(self, n: int) -> bytes:
        assert self._decryptor is not None  # set when synchronized
        return self._decryptor.update(self._take(n))

    def _read_peer_key(self) -> bool:
        """Compute S once the peer's Y is in; False while it isn't."""
        if self._available() < KEY_BYTES:
            return False
        self._secret = _shared_secret(self._take(KEY_BYTES), self._private_key)
        self._state = MseState.SYNCHRONIZING
        return True

    def _start_streams(
        self, *, ours: bytes, theirs: bytes
    ) -> tuple[RC4Stream, RC4Stream]:
        self._encryptor = RC4Stream(_hash(ours, self._secret, self._skey))
        self._decryptor = RC4Stream(_hash(theirs, self._secret, self._skey))
        return self._encryptor, self._decryptor

    def _establish(self, selected: int, initial_payload: bytes) -> MseEstablished:
        self._selected = selected
        rest = self._take(self._available())
        self._buf = bytearray()
        self._pos = 0
        self._state = MseState.ESTABLISHED
        if selected == CRYPTO_RC4:
            assert self._decryptor is not None  # set when synchronized
            rest = self._decryptor.update(rest)
        return MseEstablished(
            selected=selected,
            skey=self._skey,
            initial_payload=initial_payload,
            remainder=rest,
        )

    def _check_established(self) -> None:
        if self._state is not MseState.ESTABLISHED:
            raise LocalPeerProtocolError("mse: encryption handshake not finished")


# -- A: the side that opened the connection ----------------------------------------


class MseInitiator(_MseEndpoint):
    """The MSE handshake of the side that opened the connection (A).

    Write :meth:`initial_bytes` on connect, then feed everything received to
    :meth:`receive_data` and write :meth:`data_to_send` after each call,
    until :class:`MseEstablished` comes back.
    """

    def __init__(
        self,
        *,
        skey: bytes,
        initial_payload: bytes,
        crypto_provide: int,
        private_key: int,
        pad: bytes,
        pad_c: bytes = b"",
    ) -> None:
        """
        Args:
            skey: the torrent's 20-byte infohash.
            initial_payload: IA, sent encrypted in step 3; normally our BEP 3
                handshake (may be empty, then it goes after establishment).
            crypto_provide: bits of CRYPTO_PLAINTEXT/CRYPTO_RC4 we accept.
            private_key: the DH exponent (:func:`private_key_from_secret`).
            pad: PadA, 0..512 random bytes.
            pad_c: PadC, 0..512 bytes (clients send none).

        Raises:
            LocalPeerProtocolError: an argument has the wrong size or value.
        """
        if len(skey) != HASH_BYTES:
            raise LocalPeerProtocolError("mse: SKEY (infohash) must be 20 bytes")
        if len(initial_payload) > MAX_IA_BYTES:
            raise LocalPeerProtocolError("mse: initial payload is over 65535 bytes")
        if not crypto_provide or crypto_provide & ~_KNOWN_CRYPTO:
            raise LocalPeerProtocolError(
                f"mse: cannot offer crypto_provide {describe_crypto(crypto_provide)}"
            )
        _check_pad("PadC", pad_c)
        super().__init__(private_key=private_key, pad=pad)
        self._skey = bytes(skey)
        self._initial_payload = bytes(initial_payload)
        self._provide = crypto_provide
        self._pad_c = bytes(pad_c)
        self._vc_pattern = b""
        self._pad_d_len = -1
        self._selected_pending = 0

    @property
    def crypto_provide(self) -> int:
        return self._provide

    def _advance(self) -> MseEstablished | None:
        if self._state is MseState.AWAIT_PUBLIC_KEY:
            if not self._read_peer_key():
                return None
            self._send_step3()
        if self._state is MseState.SYNCHRONIZING and not self._sync_on_vc():
            return None
        if self._pad_d_len < 0:
            if self._available() < _SELECT.size:
                return None
            self._read_select()
        if self._available() < self._pad_d_len:
            return None
        self._take_decrypted(self._pad_d_len)  # PadD: ignored
        return self._establish(self._selected_pending, b"")

    def _send_step3(self) -> None:
        encryptor, decryptor = self._start_streams(ours=b"keyA", theirs=b"keyB")
        req2_xor_req3 = _xor(_hash(b"req2", self._skey), _hash(b"req3", self._secret))
        self._outgoing += _hash(b"req1", self._secret) + req2_xor_req3
        self._outgoing += encryptor.update(
            _PROVIDE.pack(VC, self._provide, len(self._pad_c))
            + self._pad_c
            + _U16.pack(len(self._initial_payload))
            + self._initial_payload
        )
        # ENCRYPT(VC) from B is the first 8 bytes of B's keystream.
        self._vc_pattern = decryptor.update(VC)

    def _sync_on_vc(self) -> bool:
        # The peer's pad started right after Yb; scan from there (the
        # pattern may straddle two reads, so search the whole window).
        found = self._buf.find(self._vc_pattern, self._pos, VC_SYNC_LIMIT)
        if found < 0:
            if len(self._buf) >= VC_SYNC_LIMIT:
                raise RemotePeerProtocolError(
                    f"mse: no encrypted verification constant within"
                    f" {VC_SYNC_LIMIT} bytes (peer does not know S and SKEY?)"
                )
            return False
        self._pos = found + len(VC)
        self._state = MseState.NEGOTIATING
        return True

    def _read_select(self) -> None:
        select, pad_d_len = _SELECT.unpack(self._take_decrypted(_SELECT.size))
        if select not in (CRYPTO_PLAINTEXT, CRYPTO_RC4) or not select & self._provide:
            raise RemotePeerProtocolError(
                f"mse: peer selected crypto {describe_crypto(select)} that we did"
                f" not offer (we offered {describe_crypto(self._provide)})"
            )
        if pad_d_len > MAX_PAD_BYTES:
            raise RemotePeerProtocolError(
                f"mse: PadD is {pad_d_len} bytes; at most {MAX_PAD_BYTES}"
            )
        self._selected_pending = select
        self._pad_d_len = pad_d_len


# -- B: the side that accepted the connection --------------------------------------


class MseResponder(_MseEndpoint):
    """The MSE handshake of the side that accepted the connection (B).

    Feed it the connection's bytes from the first one (the driver may have
    peeked at them with :func:`detect_handshake`); write :meth:`data_to_send`
    after each call. Yb + PadB is queued once Ya has arrived, so
    :meth:`initial_bytes` is empty before the first :meth:`receive_data`.
    """

    def __init__(
        self,
        *,
        skeys: Iterable[bytes],
        crypto_select: Callable[[int], int | None],
        private_key: int,
        pad: bytes,
        pad_d: bytes = b"",
    ) -> None:
        """
        Args:
            skeys: the infohashes (20 bytes each) we serve; the peer's
                HASH('req2', SKEY) picks one.
            crypto_select: our choice for the peer's crypto_provide: a single
                offered bit, or None to refuse (e.g. EncryptionPolicy.select).
            private_key: the DH exponent (:func:`private_key_from_secret`).
            pad: PadB, 0..512 random bytes.
            pad_d: PadD, 0..512 bytes (clients send none).

        Raises:
            LocalPeerProtocolError: an argument has the wrong size or value.
        """
        _check_pad("PadD", pad_d)
        super().__init__(private_key=private_key, pad=pad)
        self._req2: dict[bytes, bytes] = {}
        for skey in skeys:
            if len(skey) != HASH_BYTES:
                raise LocalPeerProtocolError("mse: SKEY (infohash) must be 20 bytes")
            self._req2[_hash(b"req2", skey)] = bytes(skey)
        self._crypto_select = crypto_select
        self._pad_d = bytes(pad_d)
        # Yb + PadB waits until Ya is in (see the class docstring).
        self._held = bytes(self._outgoing)
        self._outgoing.clear()
        self._req1 = b""
        self._provide = 0
        self._pad_c_len = -1
        self._ia_len = -1
        self._select_pending = 0

    @property
    def crypto_provide(self) -> int:
        """What the peer offered (0 until known)."""
        return self._provide

    def _advance(self) -> MseEstablished | None:
        if self._state is MseState.AWAIT_PUBLIC_KEY:
            if not self._read_peer_key():
                return None
            self._outgoing += self._held
            self._held = b""
            self._req1 = _hash(b"req1", self._secret)
        if self._state is MseState.SYNCHRONIZING and not self._sync_on_req1():
            return None
        if not self._skey:
            if self._available() < HASH_BYTES:
                return None
            self._identify_skey()
        if self._pad_c_len < 0:
            if self._available() < _PROVIDE.size:
                return None
            self._read_provide()
        if self._ia_len < 0:
            if self._available() < self._pad_c_len + 2:
                return None
            self._take_decrypted(self._pad_c_len)  # PadC: ignored
            (self._ia_len,) = _U16.unpack(self._take_decrypted(2))
        if self._available() < self._ia_len:
            return None
        initial_payload = self._take_decrypted(self._ia_len)
        self._send_step4()
        return self._establish(self._select_pending, initial_payload)

    def _sync_on_req1(self) -> bool:
        found = self._buf.find(self._req1, self._pos, REQ1_SYNC_LIMIT)
        if found < 0:
            if len(self._buf) >= REQ1_SYNC_LIMIT:
                raise RemotePeerProtocolError(
                    f"mse: no req1 hash within {REQ1_SYNC_LIMIT} bytes"
                    " (not an MSE handshake, or the peer got S wrong)"
                )
            return False
        self._pos = found + HASH_BYTES
        self._state = MseState.NEGOTIATING
        return True

    def _identify_skey(self) -> None:
        req2 = _xor(self._take(HASH_BYTES), _hash(b"req3", self._secret))
        skey = self._req2.get(req2)
        if skey is None:
            raise RemotePeerProtocolError(
                "mse: peer asked for a torrent we do not serve (no SKEY matches"
                " its req2 hash)"
            )
        self._skey = skey
        self._start_streams(ours=b"keyB", theirs=b"keyA")

    def _read_provide(self) -> None:
        vc, provide, pad_c_len = _PROVIDE.unpack(self._take_decrypted(_PROVIDE.size))
        if vc != VC:
            raise RemotePeerProtocolError(
                "mse: bad verification constant after the SKEY hash"
            )
        if pad_c_len > MAX_PAD_BYTES:
            raise RemotePeerProtocolError(
                f"mse: PadC is {pad_c_len} bytes; at most {MAX_PAD_BYTES}"
            )
        self._provide = provide
        select = self._crypto_select(provide)
        if select is None:
            raise RemotePeerProtocolError(
                f"mse: refusing peer's crypto_provide {describe_crypto(provide)}:"
                " no method it offers is allowed by our encryption policy"
            )
        if select not in (CRYPTO_PLAINTEXT, CRYPTO_RC4) or not select & provide:
            raise LocalPeerProtocolError(
                f"mse: crypto_select policy chose {describe_crypto(select)} for"
                f" crypto_provide {describe_crypto(provide)}"
            )
        self._select_pending = select
        self._pad_c_len = pad_c_len

    def _send_step4(self) -> None:
        assert self._encryptor is not None  # set by _identify_skey
        self._outgoing += self._encryptor.update(
            _PROVIDE.pack(VC, self._select_pending, len(self._pad_d)) + self._pad_d
        )
