"""Bin-pack documents into rows of seq_length tokens (best-fit decreasing)."""

from bisect import bisect_left, insort

import numpy as np


def pack_best_fit(lengths: np.ndarray, capacity: int) -> list[list[int]]:
    """Longest first, each into the fullest row where it still fits (a new row when none does).

    Best-fit decreasing uses at most as many rows as first-fit decreasing on the same input and runs in
    O(n log n): rows are kept by remaining room in a sorted list of distinct room sizes.
    """
    order = np.argsort(-np.asarray(lengths), kind="stable")
    rooms: list[int] = []
    rows_with_room: dict[int, list[int]] = {}
    rows: list[list[int]] = []
    for index in order.tolist():
        length = int(lengths[index])
        if length > capacity:
            raise ValueError(f"document of {length} tokens does not fit a row of {capacity}")
        at = bisect_left(rooms, length)
        if at == len(rooms):
            row, room = len(rows), capacity
            rows.append([])
        else:
            room = rooms[at]
            row = rows_with_room[room].pop()
            if not rows_with_room[room]:
                del rows_with_room[room]
                rooms.pop(at)
        rows[row].append(index)
        left = room - length
        if left > 0:
            if left not in rows_with_room:
                insort(rooms, left)
                rows_with_room[left] = []
            rows_with_room[left].append(row)
    return rows


def rows_to_arrays(rows: list[list[int]], doc_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row_offsets [rows + 1], row_docs): row r holds documents row_docs[row_offsets[r]:row_offsets[r + 1]]."""
    sizes = np.array([len(r) for r in rows], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    flat = np.array([i for r in rows for i in r], dtype=np.int64)
    return offsets, doc_ids[flat].astype(np.int64) if len(flat) else np.zeros(0, dtype=np.int64)


def layout_rows(doc_ids: np.ndarray, lengths: np.ndarray, capacity: int, packing: bool
                ) -> tuple[np.ndarray, np.ndarray]:
    """Rows for the documents doc_ids (lengths[i] is doc_ids[i]'s length): packed, or one document per row."""
    if not packing:
        return np.arange(len(doc_ids) + 1, dtype=np.int64), doc_ids.astype(np.int64)
    return rows_to_arrays(pack_best_fit(lengths, capacity), doc_ids)
