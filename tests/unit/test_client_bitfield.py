"""Bitfield: BEP 3 wire format (high bit first, spare bits zero) and set ops."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from client.core.bitfield import Bitfield
from client.errors import RemotePeerProtocolError

# (num_pieces, set indices, exact wire bytes)
WIRE_CASES = [
    (0, [], b""),
    (1, [0], b"\x80"),
    (8, [0, 7], b"\x81"),
    (9, [8], b"\x00\x80"),
    (10, [0, 1, 9], b"\xc0\x40"),
    (16, list(range(16)), b"\xff\xff"),
]


@pytest.mark.parametrize(("n", "indices", "wire"), WIRE_CASES)
def test_wire_format_both_ways(n: int, indices: list[int], wire: bytes) -> None:
    bf = Bitfield(n)
    for i in indices:
        bf.set(i)
    assert bf.to_bytes() == wire
    decoded = Bitfield.from_bytes(wire, n)
    assert list(decoded.indices()) == indices
    assert decoded == bf


def test_high_bit_is_piece_zero() -> None:
    bf = Bitfield.from_bytes(b"\x80\x00", 12)
    assert bf[0]
    assert not any(bf[i] for i in range(1, 12))


@pytest.mark.parametrize("wire", [b"", b"\x00", b"\x00\x00\x00"])
def test_wrong_length_is_remote_error(wire: bytes) -> None:
    with pytest.raises(RemotePeerProtocolError, match="expected 2"):
        Bitfield.from_bytes(wire, 10)


@pytest.mark.parametrize("last", [0x20, 0x01, 0x3F])
def test_spare_bits_set_is_remote_error(last: int) -> None:
    with pytest.raises(RemotePeerProtocolError, match="spare bits"):
        Bitfield.from_bytes(bytes([0xFF, last]), 10)


def test_set_clear_count_all_any() -> None:
    bf = Bitfield(10)
    assert not bf.any()
    assert not bf.all()
    bf.set(3)
    bf.set(9)
    assert bf[3]
    assert bf[9]
    assert bf.count() == 2
    assert bf.any()
    bf.clear(3)
    assert not bf[3]
    assert bf.count() == 1
    assert len(bf) == 10


def test_full_has_every_piece_and_zero_spare_bits() -> None:
    bf = Bitfield.full(10)
    assert bf.all()
    assert bf.count() == 10
    assert bf.to_bytes() == b"\xff\xc0"
    assert Bitfield.full(0).all()


def test_out_of_range_index() -> None:
    bf = Bitfield(3)
    with pytest.raises(IndexError):
        bf.set(3)
    with pytest.raises(IndexError):
        _ = bf[-1]


def test_iteration_yields_bools() -> None:
    assert list(Bitfield.from_string("1 0 1")) == [True, False, True]


def test_from_string_compact_forms() -> None:
    assert Bitfield.from_string("*.*") == Bitfield.from_string("1 0 1")
    assert Bitfield.from_string("101").to_string() == "101"
    with pytest.raises(ValueError, match="unexpected character"):
        Bitfield.from_string("12")


def test_has_any_not_in_is_interest() -> None:
    peer = Bitfield.from_string("0110")
    assert peer.has_any_not_in(Bitfield.from_string("0100"))
    assert not peer.has_any_not_in(Bitfield.from_string("1110"))


def test_copy_is_independent() -> None:
    a = Bitfield.from_string("100")
    b = a.copy()
    b.set(2)
    assert a.to_string() == "100"


@given(
    st.integers(min_value=0, max_value=200).flatmap(
        lambda n: st.tuples(
            st.just(n), st.sets(st.integers(0, max(n - 1, 0)), max_size=n)
        )
    )
)
def test_roundtrip(case: tuple[int, set[int]]) -> None:
    n, indices = case
    bf = Bitfield(n)
    for i in indices:
        bf.set(i)
    back = Bitfield.from_bytes(bf.to_bytes(), n)
    assert set(back.indices()) == indices
    assert back.count() == len(indices)


@given(st.binary(max_size=8), st.integers(min_value=0, max_value=64))
def test_any_input_decodes_or_raises_remote_error(data: bytes, n: int) -> None:
    try:
        bf = Bitfield.from_bytes(data, n)
    except RemotePeerProtocolError:
        return
    assert bf.to_bytes() == data


_SIZED_SETS = st.integers(min_value=0, max_value=300).flatmap(
    lambda n: st.tuples(
        st.just(n),
        st.sets(st.integers(0, max(n - 1, 0)), max_size=n),
        st.sets(st.integers(0, max(n - 1, 0)), max_size=n),
    )
)


def _of(n: int, indices: set[int]) -> Bitfield:
    bf = Bitfield(n)
    for i in indices:
        bf.set(i)
    return bf


@given(_SIZED_SETS)
def test_int_form_is_the_wire_payload_as_a_big_endian_int(
    case: tuple[int, set[int], set[int]],
) -> None:
    n, indices, _ = case
    bf = _of(n, indices)
    assert bf.to_int() == int.from_bytes(bf.to_bytes(), "big")
    assert Bitfield.from_int(bf.to_int(), n) == bf


@given(_SIZED_SETS)
def test_set_operations_agree_with_python_sets(
    case: tuple[int, set[int], set[int]],
) -> None:
    n, a, b = case
    bf_a, bf_b = _of(n, a), _of(n, b)
    assert list(bf_a.indices()) == sorted(a)
    assert list(bf_a) == [i in a for i in range(n)]
    assert [bf_a[i] for i in range(n)] == [i in a for i in range(n)]
    assert bf_a.count() == len(a)
    assert bf_a.any() == bool(a)
    assert bf_a.all() == (len(a) == n)
    assert bf_a.has_any_not_in(bf_b) == bool(a - b)
    assert bf_a.to_string() == "".join("1" if i in a else "0" for i in range(n))
    for i in b:
        bf_a.clear(i)
    assert set(bf_a.indices()) == a - b


def test_from_int_rejects_bits_outside_the_pieces() -> None:
    assert Bitfield.from_int(0b1100_0000, 2) == Bitfield.from_string("11")
    with pytest.raises(ValueError, match="outside 2 pieces"):
        Bitfield.from_int(0b0010_0000, 2)  # spare bit
    with pytest.raises(ValueError, match="outside 2 pieces"):
        Bitfield.from_int(1 << 8, 2)
    with pytest.raises(ValueError, match="outside"):
        Bitfield.from_int(-1, 2)


def test_clearing_a_clear_bit_changes_nothing() -> None:
    bf = Bitfield.from_string("101")
    bf.clear(1)
    assert bf.to_string() == "101"


def test_empty_bitfield() -> None:
    bf = Bitfield(0)
    assert bf.to_bytes() == b""
    assert bf.to_int() == 0
    assert list(bf.indices()) == []
    assert bf.all()
    assert not bf.any()
    assert Bitfield.from_string("") == bf


def test_large_bitfield_set_ops() -> None:
    n = 16384
    evens = _of(n, set(range(0, n, 2)))
    odds = _of(n, set(range(1, n, 2)))
    assert evens.count() == n // 2
    assert not evens.has_any_not_in(Bitfield.full(n))
    assert evens.has_any_not_in(odds)
    assert Bitfield.full(n).to_bytes() == b"\xff" * (n // 8)
    assert list(odds.indices())[-1] == n - 1
