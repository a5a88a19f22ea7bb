"""The linearizability checker on small histories whose verdict is known, and on generated correct ones."""

import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvcommon.testing.linearizability import (
    HistoryRecorder,
    Operation,
    assert_linearizable,
    cas,
    check_history,
    prefix_at,
    read,
    shortest_failing_prefix,
    write,
)


def verdict(*ops: Operation, **options) -> bool | None:
    return check_history(ops, **options).linearizable


# -- reads and writes -------------------------------------------------------------------------------


def test_an_empty_history_is_linearizable():
    assert verdict() is True


def test_reading_a_key_never_written_answers_none():
    assert verdict(read("a", "k", 0, 1, None)) is True
    assert verdict(read("a", "k", 0, 1, "x")) is False


def test_sequential_write_then_read_of_the_same_value():
    assert verdict(write("a", "k", 0, 1, "x"), read("b", "k", 2, 3, "x")) is True


def test_a_stale_read_after_a_completed_write_is_not_linearizable():
    history = [
        write("a", "k", 0, 1, "x"),
        write("a", "k", 2, 3, "y"),
        read("b", "k", 4, 5, "x"),
    ]
    result = check_history(history)
    assert result.linearizable is False
    assert "b read() -> 'x'" in result.explanation
    assert "a write('y')" in result.explanation


def test_a_read_of_none_after_a_completed_write_is_not_linearizable():
    assert verdict(write("a", "k", 0, 1, "x"), read("b", "k", 2, 3, None)) is False


def test_a_read_concurrent_with_a_write_may_see_either_value():
    for seen in ("x", None):
        assert verdict(write("a", "k", 0, 10, "x"), read("b", "k", 1, 2, seen)) is True
    assert verdict(write("a", "k", 0, 10, "x"), read("b", "k", 1, 2, "z")) is False


def test_concurrent_writes_take_effect_in_either_order():
    for last in ("x", "y"):
        history = [write("a", "k", 0, 5, "x"), write("b", "k", 1, 6, "y"), read("c", "k", 7, 8, last)]
        assert verdict(*history) is True


def test_the_value_stays_put_once_concurrent_writes_have_completed():
    # Both writes completed by 10: whichever came last, every later read must see the same value.
    history = [
        write("a", "k", 0, 10, "x"),
        write("b", "k", 0, 10, "y"),
        read("c", "k", 11, 12, "x"),
        read("d", "k", 13, 14, "y"),
        read("c", "k", 15, 16, "x"),
    ]
    assert verdict(*history) is False


def test_a_value_cannot_come_back_after_a_newer_one_was_read():
    history = [
        write("a", "k", 0, 10, "x"),
        write("b", "k", 0, 10, "y"),
        read("c", "k", 1, 2, "x"),
        read("c", "k", 3, 4, "y"),
        read("c", "k", 5, 6, "x"),
    ]
    assert verdict(*history) is False


def test_operations_that_touch_at_an_instant_count_as_concurrent():
    assert verdict(write("a", "k", 0, 5, "x"), read("b", "k", 5, 6, None)) is True


# -- unknown outcomes -------------------------------------------------------------------------------


def test_a_write_of_unknown_outcome_may_take_effect_or_not():
    for seen in ("x", None):
        assert verdict(write("a", "k", 0, None, "x"), read("b", "k", 5, 6, seen)) is True


def test_a_write_of_unknown_outcome_may_take_effect_late():
    history = [
        write("a", "k", 0, None, "x"),
        write("b", "k", 1, 2, "y"),
        read("c", "k", 3, 4, "y"),
        read("c", "k", 5, 6, "x"),
    ]
    assert verdict(*history) is True


def test_a_write_of_unknown_outcome_cannot_take_effect_before_it_was_invoked():
    history = [read("b", "k", 0, 1, "x"), write("a", "k", 2, None, "x")]
    assert verdict(*history) is False


def test_a_write_of_unknown_outcome_takes_effect_once():
    history = [
        write("a", "k", 0, None, "x"),
        write("b", "k", 1, 2, "y"),
        read("c", "k", 3, 4, "x"),
        read("c", "k", 5, 6, "y"),
    ]
    assert verdict(*history) is False


def test_a_read_of_unknown_outcome_constrains_nothing():
    assert verdict(write("a", "k", 0, 1, "x"), read("b", "k", 2, None, None)) is True


# -- compare-and-set --------------------------------------------------------------------------------


def test_cas_succeeds_only_on_the_expected_value():
    assert verdict(write("a", "k", 0, 1, "x"), cas("b", "k", 2, 3, "x", "y", True), read("c", "k", 4, 5, "y"))
    assert verdict(write("a", "k", 0, 1, "x"), cas("b", "k", 2, 3, "z", "y", True)) is False
    assert verdict(write("a", "k", 0, 1, "x"), cas("b", "k", 2, 3, "x", "y", False)) is False
    assert verdict(write("a", "k", 0, 1, "x"), cas("b", "k", 2, 3, "z", "y", False), read("c", "k", 4, 5, "x"))


def test_two_concurrent_cas_on_the_same_value_cannot_both_succeed():
    history = [
        write("a", "k", 0, 1, "x"),
        cas("b", "k", 2, 5, "x", "y", True),
        cas("c", "k", 2, 5, "x", "z", True),
    ]
    assert verdict(*history) is False


def test_a_cas_of_unknown_outcome_may_explain_a_read():
    history = [write("a", "k", 0, 1, "x"), cas("b", "k", 2, None, "x", "y", None), read("c", "k", 3, 4, "y")]
    assert verdict(*history) is True


# -- keys, explanations, limits ---------------------------------------------------------------------


def test_keys_are_checked_independently():
    history = [write("a", "k1", 0, 1, "x"), read("b", "k2", 2, 3, "x")]
    result = check_history(history)
    assert result.linearizable is False
    by_key = {k.key: k.linearizable for k in result.keys}
    assert by_key == {"k1": True, "k2": False}
    assert "key 'k2'" in result.explanation and "key 'k1'" not in result.explanation


def test_the_shortest_failing_prefix_ends_at_the_first_impossible_completion():
    history = [
        write("a", "k", 0, 1, "x"),
        read("b", "k", 2, 3, "x"),
        write("a", "k", 4, 5, "y"),
        read("b", "k", 6, 7, "x"),  # stale: the history fails here
        read("b", "k", 8, 9, "y"),
        read("b", "k", 10, 11, "x"),
    ]
    moment, culprit = shortest_failing_prefix(history)
    assert moment == 7
    assert culprit == history[3]
    assert verdict(*prefix_at(history, 6.5)) is True


def test_a_prefix_leaves_operations_running_at_its_end_with_an_unknown_outcome():
    history = [write("a", "k", 0, 10, "x"), read("b", "k", 1, 2, None), read("b", "k", 11, 12, "x")]
    prefix = prefix_at(history, 5)
    assert prefix == [write("a", "k", 0, None, "x"), read("b", "k", 1, 2, None)]


def test_assert_linearizable_raises_with_the_explanation():
    with pytest.raises(AssertionError, match="cannot be linearized"):
        assert_linearizable([write("a", "k", 0, 1, "x"), read("b", "k", 2, 3, "y")])


def test_the_search_gives_up_after_the_configuration_budget():
    # Many concurrent writes and an impossible read: every order of the writes must be ruled out.
    history = [write(f"c{i}", "k", 0, 100, f"v{i}") for i in range(12)]
    history.append(read("r", "k", 101, 102, "never written"))
    result = check_history(history, max_configurations=50)
    assert result.linearizable is None
    assert "undecided" in result.explanation


def test_invalid_operations_are_refused():
    with pytest.raises(ValueError, match="kind"):
        Operation("a", "k", "incr", 0, 1)
    with pytest.raises(ValueError, match="before it was invoked"):
        write("a", "k", 5, 1, "x")
    with pytest.raises(ValueError, match="expected, new"):
        Operation("a", "k", "cas", 0, 1, argument="x")


def test_the_recorder_collects_operations_from_threads():
    recorder = HistoryRecorder()

    def client(name: str) -> None:
        for i in range(50):
            started = recorder.invoke()
            recorder.write(name, "k", started, f"{name}-{i}")
        recorder.unknown(name, "k", "write", recorder.invoke(), f"{name}-lost")

    threads = [threading.Thread(target=client, args=(f"c{n}",)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ops = recorder.operations
    assert len(ops) == 4 * 51
    assert sum(not op.known for op in ops) == 4
    assert check_history(ops).linearizable is True


# -- generated histories of a correct register ------------------------------------------------------

VALUES = st.sampled_from(["a", "b", "c"])
OPERATION = st.one_of(
    st.tuples(st.just("read")),
    st.tuples(st.just("write"), VALUES),
    st.tuples(st.just("cas"), VALUES, VALUES),
)


@st.composite
def correct_histories(draw) -> list[Operation]:
    """Operations run one after another on a real register, each at its own instant (its linearization
    point), then given invocation and completion times around that instant that may overlap with others;
    some lose their outcome."""
    plan = draw(st.lists(st.tuples(st.sampled_from(["k1", "k2"]), OPERATION), max_size=40))
    registers: dict[str, str | None] = {}
    history = []
    for moment, (key, (kind, *args)) in enumerate(plan):
        invoked = moment - draw(st.floats(0, 6))
        completed = moment + draw(st.floats(0, 6))
        if draw(st.integers(0, 9)) == 0:
            completed = None
        client = f"c{moment}"
        value = registers.get(key)
        if kind == "read":
            history.append(read(client, key, invoked, completed, value))
        elif kind == "write":
            registers[key] = args[0]
            history.append(write(client, key, invoked, completed, args[0]))
        else:
            expected, new = args
            swapped = value == expected
            if swapped:
                registers[key] = new
            history.append(cas(client, key, invoked, completed, expected, new, swapped))
    return draw(st.permutations(history))


@settings(max_examples=300, deadline=None)
@given(correct_histories())
def test_histories_of_a_correct_register_are_linearizable(history):
    result = check_history(history)
    assert result.linearizable is True, result.explanation


@settings(max_examples=200, deadline=None)
@given(correct_histories(), st.data())
def test_a_read_answering_a_value_nobody_wrote_is_never_linearizable(history, data):
    moment = data.draw(st.floats(-10, 50))
    history.append(read("intruder", "k1", moment, moment + 1, "never written"))
    assert check_history(history).linearizable is False
