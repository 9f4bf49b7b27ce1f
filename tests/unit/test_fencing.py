"""Fencing arithmetic and call deadlines, without a database: a socket pair stands for a connection whose
peer went silent."""

from __future__ import annotations

import socket

from bgtasks.fencing import CallDeadlines, fence_margin


class _Conn:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def fileno(self) -> int:
        return self.sock.fileno()


def test_the_fence_margin_leaves_room_for_two_missed_heartbeats() -> None:
    assert fence_margin(30, 10) == 5
    assert fence_margin(3, 0.5) == 1
    # A healthy lease (renewed every heartbeat) always has more left than the margin.
    lease, beat = 30.0, 10.0
    assert lease - beat > fence_margin(lease, beat)


def test_a_call_past_its_deadline_has_its_socket_shut_down_and_one_on_time_does_not() -> None:
    now = [100.0]
    deadlines = CallDeadlines(lambda: now[0])
    ours, peer = socket.socketpair()
    late, late_peer = socket.socketpair()
    try:
        ours.settimeout(2)
        late.settimeout(2)
        with deadlines.within(_Conn(ours), 5, "an on-time call"):
            now[0] += 4
            assert deadlines.enforce() == []
        with deadlines.within(_Conn(late), 1, "a hanging call"):
            now[0] += 1
            assert deadlines.enforce() == ["a hanging call"]
            assert late.recv(1) == b""  # the blocked read ends: the peer never answered
            assert deadlines.enforce() == []  # cut once
        peer.sendall(b"x")
        assert ours.recv(1) == b"x"  # the call that finished in time keeps its connection
    finally:
        for s in (ours, peer, late, late_peer):
            s.close()
