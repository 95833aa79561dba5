"""The spool's drop policy (pure): bounds hold, reports go first, events are protected."""

from __future__ import annotations

from hypothesis import given, strategies as st

from agent.link.drop_policy import Entry, Priority, SpoolLimits, plan_drops

R, E = Priority.ROUTINE, Priority.EVENT


def queue(*specs: tuple[Priority, int]) -> list[Entry]:
    return [Entry(seq=i + 1, priority=p, size=size) for i, (p, size) in enumerate(specs)]


def test_room_left_drops_nothing() -> None:
    plan = plan_drops(queue((R, 10)), Entry(2, R, 10), SpoolLimits(max_records=2, max_bytes=20))
    assert plan.drop == () and plan.accept


def test_full_by_count_drops_the_oldest_report_not_the_older_event() -> None:
    q = queue((E, 1), (R, 1), (R, 1))
    plan = plan_drops(q, Entry(4, E, 1), SpoolLimits(max_records=3, max_bytes=100))
    assert plan.drop == (2,) and plan.accept


def test_full_by_bytes_drops_as_many_old_reports_as_needed() -> None:
    q = queue((R, 40), (E, 10), (R, 40), (R, 10))
    plan = plan_drops(q, Entry(5, R, 60), SpoolLimits(max_records=100, max_bytes=100))
    assert plan.drop == (1, 3) and plan.accept


def test_a_report_never_displaces_an_event() -> None:
    q = queue((E, 1), (E, 1))
    plan = plan_drops(q, Entry(3, R, 1), SpoolLimits(max_records=2, max_bytes=100))
    assert plan.drop == () and not plan.accept


def test_an_event_displaces_the_oldest_event_once_no_report_is_left() -> None:
    q = queue((E, 1), (R, 1), (E, 1))
    plan = plan_drops(q, Entry(4, E, 3), SpoolLimits(max_records=10, max_bytes=4))
    assert plan.drop == (2, 1) and plan.accept


def test_a_record_larger_than_the_whole_spool_is_refused_without_dropping() -> None:
    plan = plan_drops(queue((R, 1)), Entry(2, E, 11), SpoolLimits(max_records=10, max_bytes=10))
    assert plan.drop == () and not plan.accept


specs = st.lists(
    st.tuples(st.sampled_from([R, E]), st.integers(min_value=1, max_value=50)), max_size=40
)


@given(
    q=specs,
    incoming=st.tuples(st.sampled_from([R, E]), st.integers(min_value=1, max_value=50)),
    max_records=st.integers(min_value=1, max_value=30),
    max_bytes=st.integers(min_value=50, max_value=800),
)
def test_policy_properties(
    q: list[tuple[Priority, int]],
    incoming: tuple[Priority, int],
    max_records: int,
    max_bytes: int,
) -> None:
    limits = SpoolLimits(max_records=max_records, max_bytes=max_bytes)
    queued = queue(*q)
    new = Entry(len(queued) + 1, *incoming)
    plan = plan_drops(queued, new, limits)
    dropped = [e for e in queued if e.seq in set(plan.drop)]
    kept = [e for e in queued if e.seq not in set(plan.drop)]
    kept += [new] if plan.accept else []
    over = len(queued) + 1 > max_records or sum(e.size for e in queued) + new.size > max_bytes

    assert len(set(plan.drop)) == len(plan.drop) == len(dropped)  # only queued seqs, once
    if not over:
        assert plan.accept and not plan.drop
    if plan.accept:  # bounds hold afterwards
        assert len(kept) <= max_records and sum(e.size for e in kept) <= max_bytes
        if plan.drop:  # and no more was dropped than needed
            last = next(e for e in queued if e.seq == plan.drop[-1])
            again = [*kept, last]
            assert len(again) > max_records or sum(e.size for e in again) > max_bytes
    else:
        assert not plan.drop
    if any(e.priority is E for e in dropped):  # events go only when no report is left
        assert new.priority is E and all(e.priority is E for e in kept)
    reports = [e for e in queued if e.priority is R]
    dropped_reports = [e for e in dropped if e.priority is R]
    assert dropped_reports == reports[: len(dropped_reports)]  # oldest reports first
    events = [e for e in queued if e.priority is E]
    dropped_events = [e for e in dropped if e.priority is E]
    assert dropped_events == events[: len(dropped_events)]
