"""Pacing a node's background walks: every interval while they keep up, back to back (within a share of the
reactor thread) while they are behind. And when the history compaction and the expiry sweep say so."""

import time

import pytest
from twisted.internet.task import Clock

from kvcommon.hlc import LOGICAL_BITS
from kvnode.compaction import HistoryCompactor
from kvnode.expiry import ExpirySweeper
from kvnode.pacing import PacedTask
from tests.unit import test_expiry
from tests.unit.test_node_service import make_service

INTERVAL = 0.1


def test_the_compactor_says_it_is_behind_until_a_walk_larger_than_its_budget_is_done():
    service, clock = make_service(write_level="1")
    for i in range(30):
        service.execute([b"SET", b"k%d" % i, b"one"], 0, 3)
        service.execute([b"SET", b"k%d" % i, b"two"], 0, 3)
        clock.advance(0)
    compactor = HistoryCompactor(service, budget=10, grace_ms=0)
    long_after = (service.clock.last >> LOGICAL_BITS) + service.config.retention_seconds * 1000 + 1
    removed = compactor.tick(long_after)
    assert compactor.behind, "60 history records of the partition, 10 read a tick"
    ticks = 1
    while compactor.behind:
        removed += compactor.tick(long_after)
        ticks += 1
        assert ticks < 20
    assert removed == 30, "the old version of every key"
    assert ticks >= 6
    compactor.tick(long_after)
    assert not compactor.behind


def test_the_expiry_sweep_says_it_is_behind_until_every_due_key_is_deleted():
    service, clock = test_expiry.make_service()
    for i in range(25):
        test_expiry.run(service, clock, "SET", f"k{i}", "v", "PX", "20")
    sweeper = ExpirySweeper(service.store, service._writable_primaries, service._delete_expired, delete_budget=10)
    sweeper.tick(int(time.time() * 1000))  # walks the partition, new to it, and remembers the 25 keys
    assert not sweeper.behind, "nothing is due yet"
    time.sleep(0.03)
    deleted = []
    while True:
        deleted.append(sweeper.tick(int(time.time() * 1000)))
        clock.advance(0)
        if not sweeper.behind:
            break
        assert len(deleted) < 10
    assert deleted == [10, 10, 5]
    assert test_expiry.run(service, clock, "DBSIZE") == 0


class ScriptedWork:
    """Stands in for a background walk: behind for the first ``behind_ticks`` ticks."""

    def __init__(self, behind_ticks: int, fail_at: int | None = None):
        self.behind_ticks = behind_ticks
        self.fail_at = fail_at
        self.ticks = 0
        self.behind = False

    def tick(self):
        self.ticks += 1
        if self.ticks == self.fail_at:
            raise OSError("the store went away")
        self.behind = self.ticks <= self.behind_ticks
        return 0


class FakeTimer:
    """Each tick takes ``tick_seconds``: the timer advances by that much between a tick's two readings."""

    def __init__(self, tick_seconds: float):
        self.tick_seconds = tick_seconds
        self.now = 0.0
        self.readings = 0

    def __call__(self) -> float:
        self.readings += 1
        if self.readings % 2 == 0:
            self.now += self.tick_seconds
        return self.now


def paced(clock: Clock, work: ScriptedWork, tick_seconds: float, share: float = 0.1) -> PacedTask:
    task = PacedTask(clock, "the scripted work", work.tick, lambda: work.behind, INTERVAL, share,
                     timer=FakeTimer(tick_seconds))
    task.start()
    return task


def run(clock: Clock, seconds: float, step: float = 0.001) -> None:
    for _ in range(round(seconds / step)):
        clock.advance(step)


def test_ticks_come_every_interval_while_the_work_keeps_up():
    clock = Clock()
    work = ScriptedWork(behind_ticks=0)
    paced(clock, work, 0.001)
    run(clock, 10 * INTERVAL + 0.0005)
    assert work.ticks == 10


def test_while_behind_ticks_take_their_share_of_the_thread_then_slow_down_again():
    clock = Clock()
    work = ScriptedWork(behind_ticks=100)
    pacer = paced(clock, work, 0.002)
    run(clock, INTERVAL)  # the first tick
    assert work.ticks == 1
    # Each 2 ms tick is followed by 18 ms of pause, so ticks take a tenth of the thread (50 a second). This
    # clock stands still during a tick, so here a tick comes every 18 ms: 55 in a second.
    [pause] = clock.getDelayedCalls()
    assert pause.getTime() - clock.seconds() == pytest.approx(0.018)
    run(clock, 1.0)
    assert 54 <= work.ticks - 1 <= 56
    assert pacer.seconds == pytest.approx(work.ticks * 0.002)
    run(clock, 1.5)  # past the 100 behind ticks: back to one every interval
    caught_up = work.ticks
    run(clock, 1.0)
    assert work.ticks - caught_up == pytest.approx(1.0 / INTERVAL, abs=1)


def test_a_failed_tick_is_logged_and_the_ticks_go_on(caplog):
    clock = Clock()
    work = ScriptedWork(behind_ticks=0, fail_at=2)
    paced(clock, work, 0.001)
    run(clock, 5 * INTERVAL + 0.0005)
    assert work.ticks == 5
    assert "the scripted work failed" in caplog.text


def test_stop_cancels_the_next_tick():
    clock = Clock()
    work = ScriptedWork(behind_ticks=0)
    paced(clock, work, 0.001).stop()
    run(clock, 3 * INTERVAL)
    assert work.ticks == 0 and not clock.getDelayedCalls()


def test_the_expiry_sweep_is_not_behind_for_walks_a_full_heap_keeps_asking_for():
    service, clock = test_expiry.make_service()
    sweeper = ExpirySweeper(service.store, service._writable_primaries, service._delete_expired, max_tracked=2)
    for i in range(5):
        test_expiry.run(service, clock, "SET", f"k{i}", "v", "EX", "100")
        key = b"k%d" % i
        sweeper.note(0, {key: service.store.get(0, key)})  # as the node notes a write with an expiry
        sweeper.tick(int(time.time() * 1000))
        if i >= 2:
            assert sweeper._unwalked, "no room in the heap: the partition waits for another walk"
        assert not sweeper.behind, "walks go at the base pace, and nothing is due"
