"""nccl-tests output parsing on a real-format all_reduce_perf table."""

from __future__ import annotations

from agent.burnin.nccl_tests import parse_all_reduce_perf

OUTPUT = """\
# nThread 1 nGpus 8 minBytes 1048576 maxBytes 1073741824 step: 2(factor) warmup iters: 5 iters: 20
#
#                                                              out-of-place                       in-place
#       size         count      type   redop    root     time   algbw   busbw #wrong     time   algbw   busbw #wrong
#        (B)    (elements)                               (us)  (GB/s)  (GB/s)            (us)  (GB/s)  (GB/s)
     1048576        262144     float     sum      -1    40.12   26.14   45.74      0    39.80   26.35   46.11      0
   268435456      67108864     float     sum      -1   1174.5  228.55  399.97      0   1171.2  229.20  401.10      0
  1073741824     268435456     float     sum      -1   4471.3  240.14  420.24      0   4470.0  240.21  420.37      0
# Out of bounds values : 0 OK
# Avg bus bandwidth    : 288.89
"""


def test_rows_and_out_of_place_numbers() -> None:
    result = parse_all_reduce_perf(OUTPUT, world_size=8)
    assert result.ok
    assert [r.bytes for r in result.sizes] == [1048576, 268435456, 1073741824]
    assert result.peak_busbw_gbps == 420.24
    assert result.sizes[0].time_us == 40.12


def test_wrong_values_and_failed_footer_are_errors() -> None:
    bad = OUTPUT.replace("420.24      0", "420.24      3").replace("0 OK", "3 FAILED")
    result = parse_all_reduce_perf(bad, world_size=8)
    assert result.sizes[-1].wrong == 3
    assert not result.ok
    assert "FAILED" in result.error


def test_empty_output_is_an_error_not_a_pass() -> None:
    result = parse_all_reduce_perf("# nothing ran\n", world_size=8)
    assert not result.ok
    assert "no result rows" in result.error
