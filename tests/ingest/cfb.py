"""A small writer of Compound File Binary (OLE2, [MS-CFB] version 3) files, the container of Word 97-2003
documents and Outlook messages, for test fixtures: streams under 4096 bytes go to the mini stream as the
format requires, directory siblings form a chain (the format asks for a red-black tree; readers look names up
and do not check colours)."""

from __future__ import annotations

import struct

SECTOR = 512
MINI = 64
CUTOFF = 4096
FREE, END, FATSECT, NOSTREAM = 0xFFFFFFFF, 0xFFFFFFFE, 0xFFFFFFFD, 0xFFFFFFFF


def _sectors(n: int, size: int) -> int:
    return -(-n // size)


def write_cfb(streams: dict[str, bytes]) -> bytes:
    """``streams``: path ("Storage/Stream", "/" separating storages) -> bytes. Returns the file's bytes."""
    # the directory: root, then storages and streams in path order
    entries = [{"name": "Root Entry", "type": 5, "kids": [], "data": b""}]
    index = {"": 0}
    for path in sorted(streams):
        parts = path.split("/")
        for i in range(1, len(parts) + 1):
            key = "/".join(parts[:i])
            if key in index:
                continue
            leaf = i == len(parts)
            index[key] = len(entries)
            entries.append({"name": parts[i - 1], "type": 2 if leaf else 1, "kids": [],
                            "data": streams[path] if leaf else b""})  # fmt: skip
            entries[index["/".join(parts[: i - 1])]]["kids"].append(index[key])
    small = [e for e in entries if e["type"] == 2 and len(e["data"]) < CUTOFF]
    big = [e for e in entries if e["type"] == 2 and len(e["data"]) >= CUTOFF]
    # the mini stream and its FAT
    mini_fat: list[int] = []
    mini_data = bytearray()
    for e in small:
        n = _sectors(len(e["data"]), MINI)
        e["start"] = len(mini_fat) if n else END
        mini_fat += [len(mini_fat) + k + 1 for k in range(n - 1)] + ([END] if n else [])
        mini_data += e["data"].ljust(n * MINI, b"\0")
    n_dir = _sectors(len(entries) * 128, SECTOR)
    n_minifat = _sectors(len(mini_fat) * 4, SECTOR)
    n_ministream = _sectors(len(mini_data), SECTOR)
    n_big = sum(_sectors(len(e["data"]), SECTOR) for e in big)
    n_fat = 1
    while n_fat * (SECTOR // 4) < n_fat + n_dir + n_minifat + n_ministream + n_big:
        n_fat += 1
    assert n_fat <= 109, "fixture too large for a header-only DIFAT"
    fat = [FATSECT] * n_fat
    chains: list[tuple[int, bytes]] = []  # (first sector, data)

    def chain(data: bytes, count: int) -> int:
        first = len(fat)
        fat.extend(first + k + 1 for k in range(count - 1))
        fat.append(END)
        chains.append((first, data.ljust(count * SECTOR, b"\0")))
        return first

    dir_start = len(fat)
    fat.extend(dir_start + k + 1 for k in range(n_dir - 1))
    fat.append(END)
    minifat_start = chain(b"".join(struct.pack("<I", x) for x in mini_fat), n_minifat) if n_minifat else END
    entries[0]["start"] = chain(bytes(mini_data), n_ministream) if n_ministream else END
    entries[0]["size"] = len(mini_data)
    for e in big:
        e["start"] = chain(e["data"], _sectors(len(e["data"]), SECTOR))
    for e in entries:
        if e["type"] == 1:
            e["start"] = 0
        e.setdefault("size", len(e["data"]))
    # siblings: each storage's children chained through the right-sibling field
    for e in entries:
        e.setdefault("left", NOSTREAM)
        e.setdefault("right", NOSTREAM)
        kids = e["kids"]
        e["child"] = kids[0] if kids else NOSTREAM
        for a, b in zip(kids, kids[1:], strict=False):
            entries[a]["right"] = b
    directory = bytearray()
    for e in entries:
        name = e["name"].encode("utf-16-le")[:62] + b"\0\0"
        directory += struct.pack(
            "<64sHBBIII16sIQQII", name, len(name), e["type"], 1, e["left"], e["right"], e["child"], bytes(16),
            0, 0, 0, e["start"] if e["start"] is not None else END, e["size"],
        ) + b"\0" * 4  # fmt: skip
    directory = bytes(directory).ljust(n_dir * SECTOR, b"\0")
    fat_bytes = b"".join(struct.pack("<I", x) for x in fat).ljust(n_fat * SECTOR, b"\xff")
    difat = list(range(n_fat)) + [FREE] * (109 - n_fat)
    header = struct.pack(
        "<8s16sHHHHH6sIIIIIIIII", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", bytes(16), 0x3E, 3, 0xFFFE, 9, 6,
        bytes(6), 0, n_fat, dir_start, 0, CUTOFF, minifat_start, n_minifat, END, 0,
    ) + b"".join(struct.pack("<I", x) for x in difat)  # fmt: skip
    body = bytearray(fat_bytes) + directory
    for _first, data in chains:
        body += data
    return header + bytes(body)
