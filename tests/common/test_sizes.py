"""The burn-in size grammar the controller (requests) and the agent's worker share."""

from __future__ import annotations

import pytest

from gpufleet_common.sizes import MAX_SIZES, parse_size, parse_sizes

M = 1 << 20


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1M", 1 << 20), ("64MiB", 64 << 20), ("1G", 1 << 30), ("4096", 4096), ("2k", 2048)],
)
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("bad", ["", "1X", "-4M", "M", "0"])
def test_parse_size_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_size(bad)


@pytest.mark.parametrize(("text", "expected"), [
    ("1M", (M,)), ("1M,16M,64MiB", (M, 16 * M, 64 * M)), ("4096", (4096,)),
    ("1K:1M", tuple(1024 << i for i in range(11))), ("2G", (2 << 30,)),
    (" 8 M , 1g ", (8 * M, 1 << 30)), ("1M:1G", tuple(M << i for i in range(11))),
    ("64k:1m", (64 << 10, 128 << 10, 256 << 10, 512 << 10, M)),
])
def test_sizes_lists_and_doubling_ranges(text: str, expected: tuple[int, ...]) -> None:
    assert parse_sizes(text) == expected


def test_a_range_stops_at_the_most_sizes_an_agent_takes() -> None:
    assert len(parse_sizes("1:1G")) == 31
    assert parse_sizes(f"1:{1 << 70}") == tuple(1 << i for i in range(MAX_SIZES))


@pytest.mark.parametrize("text", ["1X", "-1M", "M", "0", "16M:1M", "1.5M", "", " , "])
def test_bad_sizes_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_sizes(text)
