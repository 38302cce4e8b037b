"""PieceCache reads evicted pieces' buffers again: what it serves stays the
pieces' bytes."""

import random
from pathlib import Path

from client.core.metainfo import parse_metainfo
from client.maketorrent import create_torrent
from client.session import PieceCache
from client.storage import Storage

PIECE = 16384


async def test_reused_buffers_hold_the_right_pieces(tmp_path: Path) -> None:
    data = random.Random(7).randbytes(PIECE * 12 + 1000)  # a short last piece
    (tmp_path / "data.bin").write_bytes(data)
    meta = parse_metainfo(create_torrent(tmp_path / "data.bin", piece_length=PIECE))
    storage = Storage(tmp_path, meta)
    try:
        cache = PieceCache(storage, capacity=4)
        order = [*range(13), *range(12, -1, -1), 3, 9, 12, 0, 5]
        for i in order:
            await cache.load([i, (i + 1) % 13])
            for j in range(13):  # whatever is cached is the right bytes
                got = cache.peek(j)
                if got is not None:
                    assert bytes(got) == data[j * PIECE : (j + 1) * PIECE], (i, j)
            assert cache.peek(i) is not None or cache.peek((i + 1) % 13) is not None
    finally:
        storage.close()
