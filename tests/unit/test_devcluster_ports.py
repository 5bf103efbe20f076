import socket

import pytest

from devcluster import ports


def test_a_free_port_is_below_the_ephemeral_range_and_can_be_bound() -> None:
    low, _ = ports._ephemeral_range()
    port = ports.free_port()
    assert ports.LOWEST <= port < low
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_a_port_a_listener_holds_is_passed_over(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        taken = held.getsockname()[1]
        picks = iter([taken, taken, 23456])
        monkeypatch.setattr(ports._pick, "randrange", lambda low, high: next(picks))
        assert ports.free_port() == 23456


def test_no_free_port_is_an_error_that_says_where_it_looked(monkeypatch: pytest.MonkeyPatch) -> None:
    def refused(self: socket.socket, address: object) -> None:
        raise OSError("in use")

    monkeypatch.setattr(socket.socket, "bind", refused)
    with pytest.raises(RuntimeError, match=r"no free port on 127\.0\.0\.1 between 10000"):
        ports.free_port()
