"""A state's bytes, packed again only where a batch changed it.

A worker keeps the states it wrote decoded between batches, and packs each
one again after every batch that touches it. Packing such a state took 32-40 us
for the bench view where the same state freshly decoded packed in 6-12 us: a
batch's updates scatter a state's numbers over the heap, and msgpack visits
every object. A batch touches one or two of a state's panes, so each pane's
bytes are kept from the state's last packing (`PaneBytes`, dropped by the
engine for each pane it changes) and only the changed panes are packed again.

The bytes are those of `msgpack.packb` over the whole state: a list is packed
element after element and a dict item after item in its order, so a pane's
bytes are the same wherever they are packed. Nothing that stores or compares
state bytes can tell.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgpack

__all__ = ["PaneBytes", "pack_state", "unpack_head", "unpack_state"]

# per grid: pane index -> the pane's packed (index, partials) item
PaneBytes = list[dict[int, bytes]]

_HEADERS = msgpack.Packer(use_bin_type=True)  # array and map headers only: a call returns its bytes


def _pack(value: object) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


def pack_state(fmt: int, layout: str, state: Any) -> bytes:
    """An `EntityState` as msgpack: `[fmt, layout, latest_ms, partition, offset, grids, sessions]`.

    A state packed for the first time is packed whole (fastest for one just
    decoded); from its second packing on, each pane's bytes are kept and
    reused until the engine changes the pane.
    """
    kept = state.pane_bytes
    if kept is None:
        state.pane_bytes = [{} for _ in state.grids]
        return _pack([fmt, layout, state.latest_ms, state.partition, state.offset, state.grids, state.sessions])
    parts = [_HEADERS.pack_array_header(7),
             _pack([fmt, layout, state.latest_ms, state.partition, state.offset])[1:],  # a fixarray's 1-byte header off
             _HEADERS.pack_array_header(len(state.grids))]
    for g, panes in enumerate(state.grids):
        old, new = kept[g], {}
        parts.append(_HEADERS.pack_map_header(len(panes)))
        for index, partials in panes.items():
            item = old.get(index)
            if item is None:
                item = _pack([index, partials])[1:]  # key then value, as a map item: the pair's header off
            new[index] = item
            parts.append(item)
        kept[g] = new  # panes dropped since the last packing go with it
    parts.append(_pack(state.sessions))
    return b"".join(parts)


def unpack_state(blob: bytes) -> list:
    """The seven fields `pack_state` wrote."""
    return msgpack.unpackb(blob, raw=False, strict_map_key=False)


def unpack_head(blob: bytes, check_layout: Callable[[int, str], None]) -> tuple[int, int]:
    """(latest_ms, partition), the panes left unread; `check_layout(fmt, layout)` is called (and may raise)
    before anything after the layout is read, so bytes of another layout fail there and nowhere else."""
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
    unpacker.feed(blob)
    unpacker.read_array_header()
    check_layout(unpacker.unpack(), unpacker.unpack())
    return unpacker.unpack(), unpacker.unpack()
