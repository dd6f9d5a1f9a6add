"""The service tree's stop order and signal handling, without a real reactor."""

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.error import ReactorNotRunning

from partypool.service import StopInOrder, StopOnSigterm


class Recorder(Service):
    def __init__(self, name: str, log: list, wait: defer.Deferred | None = None):
        self.name, self.log, self.wait = name, log, wait

    def stopService(self):  # noqa: N802
        super().stopService()
        self.log.append(f"stop {self.name}")
        return self.wait


def test_children_stop_one_after_another_last_first():
    """The farewell (last) must finish before the store (first) closes."""
    log: list[str] = []
    draining = defer.Deferred()
    top = StopInOrder()
    Recorder("store", log).setServiceParent(top)
    Recorder("farewell", log, draining).setServiceParent(top)
    top.startService()
    stopped = top.stopService()
    assert log == ["stop farewell"]
    draining.callback(None)
    assert log == ["stop farewell", "stop store"]
    assert stopped.called


def test_a_second_sigterm_is_harmless():
    class StoppedReactor:
        def stop(self):
            raise ReactorNotRunning()

    StopOnSigterm(StoppedReactor())._stop()  # no exception


def test_farewell_ends_as_soon_as_everyone_is_gone():
    """The stop waits for connections to close, not for the whole grace."""
    from twisted.internet.task import Clock

    from partypool.service import Farewell
    from tests.helpers import connect, make_pool

    clock = Clock()
    pool = make_pool(clock)
    peer = connect(pool, host="127.0.0.2")
    peer.received()
    farewell = Farewell(pool, grace=5.0)
    farewell.startService()
    drained = farewell.stopService()
    assert peer.received() == ["BYE server stopping"]
    clock.advance(0.05)
    assert not drained.called  # still connected
    peer.lose()
    clock.advance(0.05)
    assert drained.called and clock.seconds() < 1


def test_farewell_gives_up_after_the_grace():
    from twisted.internet.task import Clock

    from partypool.service import Farewell
    from tests.helpers import connect, make_pool

    clock = Clock()
    pool = make_pool(clock)
    connect(pool, host="127.0.0.2")
    farewell = Farewell(pool, grace=5.0)
    farewell.startService()
    drained = farewell.stopService()
    clock.pump([0.05] * 99)
    assert not drained.called
    clock.pump([0.05] * 2)
    assert drained.called
