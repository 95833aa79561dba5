"""BurninRequest validation and defaults (pure)."""

from __future__ import annotations

import pytest

from controller.burnin.params import (
    BurninDefaults,
    BurninRequestError,
    params_from_request,
    parse_options,
    with_repeats,
)
from protos.gpufleet.v1 import fleet_pb2

M = 1 << 20


def test_defaults_fill_in_what_the_request_leaves_at_zero() -> None:
    p = params_from_request(fleet_pb2.BurninRequest(nodes=["a", "b", "a"]), BurninDefaults())
    assert p.nodes == ("a", "b") and not p.all_nodes
    assert p.sizes == (M, 16 * M, 64 * M)
    assert (p.iters, p.warmup_iters, p.timeout_s, p.port_base) == (20, 5, 300.0, 29500)
    assert p.max_parallel == 4096  # "all at once", within the controller's own bound
    assert p.options_for("a") == {}


def test_a_full_request_is_taken_as_given() -> None:
    p = params_from_request(fleet_pb2.BurninRequest(
        all=True, sizes="1M,4M", iters=7, warmup_iters=1, timeout_s=9.5, multi_node=True,
        ranks_per_node=2, max_parallel=3, master_port=31000, repeats=3,
        node_options={"n1": "slowdown=4; hang=1"}))
    assert p.all_nodes and p.nodes == ()
    assert p.sizes == (M, 4 * M, 4 * M, 4 * M)
    assert (p.iters, p.warmup_iters, p.timeout_s, p.ranks_per_node) == (7, 1, 9.5, 2)
    assert (p.max_parallel, p.port_base, p.multi_node) == (3, 31000, True)
    assert dict(p.options_for("n1")) == {"slowdown": "4", "hang": "1"}


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(BurninRequestError) as err:
        params_from_request(fleet_pb2.BurninRequest(
            nodes=["a"], all=True, sizes="1X", iters=-1, timeout_s=-2, ranks_per_node=5000,
            max_parallel=-1, master_port=70000, repeats=99,
            node_options={"a": "novalue", "b": "x=1"}))
    problems = err.value.problems
    assert problems == [
        "name nodes or set all, not both",
        "sizes: not a size: '1X' (use e.g. 1M, 64MiB, 1G)",
        "iters must be 0..1000000 (0 = default), got -1",
        "timeout_s must be 0..604800 (0 = default), got -2.0",
        "ranks_per_node must be 0..1024 (0 = one per GPU), got 5000",
        "max_parallel must be >= 0 (0 = all at once), got -1",
        "repeats must be 0..32 (0 = once), got 99",
        "master_port must be 0..65535 (0 = 29500), got 70000",
        "node_options for 'a': option 'novalue' is not key=value",
        "node_options names 'b', which is not requested",
    ]
    assert str(err.value).startswith("invalid burn-in request: name nodes or set all")


def test_nothing_requested_and_too_many_measurements_are_refused() -> None:
    with pytest.raises(BurninRequestError, match="name the nodes to burn in, or set all"):
        params_from_request(fleet_pb2.BurninRequest())
    with pytest.raises(BurninRequestError, match="more than 64 measurements"):
        params_from_request(fleet_pb2.BurninRequest(all=True, sizes="1:8G", repeats=32))
    with pytest.raises(BurninRequestError, match=r"timeout_s must be .* got nan"):
        params_from_request(fleet_pb2.BurninRequest(all=True, timeout_s=float("nan")))


def test_options_and_repeats_helpers() -> None:
    assert parse_options("a=1;;b = two ;") == {"a": "1", "b": "two"}
    with pytest.raises(ValueError, match="'=1' is not key=value"):
        parse_options("=1")
    assert with_repeats((M, 4 * M), 1) == (M, 4 * M)
    assert with_repeats((4 * M, M), 3) == (4 * M, M, 4 * M, 4 * M)
    assert with_repeats((), 3) == ()


def test_cross_domain_implies_the_domain_pass() -> None:
    p = params_from_request(fleet_pb2.BurninRequest(all=True, cross_domain=True))
    assert (p.cross_domain, p.multi_node) == (True, True)
    q = params_from_request(fleet_pb2.BurninRequest(all=True, multi_node=True))
    assert (q.cross_domain, q.multi_node) == (False, True)
