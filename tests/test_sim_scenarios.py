"""Golden scenarios: scripted fault schedules on fixed seeds, every invariant plus the outcome."""

from __future__ import annotations

from tchat.core.messages import Election, LeaderAlive, LeaderSuspect
from tchat.sim.invariants import election_bound
from tchat.sim.scenarios import (
    acked,
    boot,
    client,
    finish,
    join,
    leader,
    say,
    tell,
    wait_until,
)
from tchat.sim.world import World

NAMES = ["ann", "bob", "cyd"]


def _all_acked(world: World, sent: list[tuple[str, int | None]]) -> bool:
    return all(acked(world, name, cmid) for name, cmid in sent)


def _chat_in_lobby(
    world: World, names: list[str], count: int, tag: str, timeout: float = 3.0
) -> None:
    sent = [(name, join(world, name, "lobby")) for name in names]
    assert wait_until(world, lambda: _all_acked(world, sent), 3.0)
    sent = [(n, say(world, n, "lobby", f"{tag} {n} {i}")) for i in range(count) for n in names]
    assert wait_until(world, lambda: _all_acked(world, sent), timeout)


def _follow(world: World, leader_id: int) -> bool:
    return (
        len(world.leaders()) == 1
        and world.leaders()[0].server_id == leader_id
        and all(c.node.leader_id == leader_id for c in world.serving_clients())
        and len(world.serving_clients()) == sum(1 for c in world.clients.values() if c.alive)
    )


def test_leader_crash_highest_live_id_takes_over() -> None:
    world = boot(1, [10, 20, 30], NAMES)
    assert leader(world).server_id == 30
    _chat_in_lobby(world, NAMES, 3, "before")
    old_epoch = leader(world).node.epoch
    world.crash_server(30)
    during = say(world, "bob", "lobby", "during failover")
    assert wait_until(world, lambda: _follow(world, 20), 5.0)
    assert wait_until(world, lambda: acked(world, "bob", during), 2.0)  # resent, deduplicated
    finish(world)
    new = leader(world)
    assert new.server_id == 20 and new.node.epoch > old_epoch
    rnd = world.checker.completed_rounds()[-1]
    assert rnd.leader == 20 and rnd.messages <= election_bound(3)


def test_crash_of_the_token_holder_mid_round() -> None:
    world = boot(2, [10, 20, 30, 40], NAMES)
    _chat_in_lobby(world, NAMES, 2, "before")
    holder: dict[str, int] = {}

    def lose_token(src: str, dst: str, message: object) -> bool:
        # The first server that got the token acked it; as it forwards, it crashes.
        if type(message) is not Election:
            return False
        sender = world.slot_at(src)
        if not holder:
            holder["id"] = world.slot_at(dst).server_id  # type: ignore[union-attr]
            return False
        if sender is not None and sender.server_id == holder["id"] and "crashed" not in holder:
            holder["crashed"] = 1
            world.crash_server(holder["id"])
            return True
        return False

    world.intercept = lose_token
    world.crash_server(40)
    assert wait_until(world, lambda: "crashed" in holder, 3.0)
    survivors = sorted(s.server_id for s in world.running_servers())
    assert wait_until(world, lambda: _follow(world, survivors[-1]), 6.0)
    world.intercept = None
    finish(world)
    assert leader(world).server_id == survivors[-1]
    assert len(world.checker.completed_rounds()) >= 2  # the lost round was redone


def test_concurrent_initiators_elect_one_leader_within_the_bound() -> None:
    # Every backup heard the leader's last heartbeat at about the same time: on seed 4 all
    # four suspect it within a few milliseconds and start rounds concurrently.
    world = boot(4, [3, 7, 11, 19, 23], NAMES)
    world.crash_server(23)
    assert wait_until(world, lambda: _follow(world, 19), 5.0)
    finish(world)
    rnd = world.checker.completed_rounds()[-1]
    assert rnd.leader == 19
    assert len(rnd.initiators) >= 2, rnd
    assert rnd.messages <= election_bound(5), rnd
    assert all(r.messages <= r.bound for r in world.checker.completed_rounds() if r.clean)


def test_graceful_stop_hands_over_without_a_timeout() -> None:
    world = boot(3, [3, 7, 11, 19, 23], NAMES)
    stopped_at = world.now
    world.stop_server(23)  # StepDown: the successor starts at once
    timing = world.timing
    assert wait_until(world, lambda: _follow(world, 19), 5.0)
    rnd = world.checker.completed_rounds()[-1]
    assert rnd.leader == 19
    assert rnd.completed is not None and rnd.completed - stopped_at < timing.leader_timeout
    finish(world)


def test_joining_server_crashes_during_state_transfer() -> None:
    world = boot(4, [10, 20, 30], NAMES)
    _chat_in_lobby(world, NAMES, 60, "x" * 300, timeout=20.0)  # several transfer chunks
    size = len(leader(world).node.log)
    joiner = world.add_server(50, start=False)
    seen: dict[str, int] = {"frames": 0}

    def crash_mid_transfer(src: str, dst: str, message: object) -> bool:
        if dst == joiner.addr and type(message).__name__ in ("Admit", "SyncData"):
            seen["frames"] += 1
            if seen["frames"] == 1:
                world.after(0.0, lambda: world.crash_server(50))
        return False

    world.intercept = crash_mid_transfer
    world.start_server(50)
    assert wait_until(world, lambda: not joiner.alive, 3.0)
    assert len(joiner.durable.entries) < size  # it really died mid-transfer
    world.run_for(0.5)
    world.intercept = None
    world.start_server(50)
    finish(world)
    assert leader(world).server_id == 30  # a joining higher id does not depose the leader
    assert world.role(joiner) == "BACKUP" and len(joiner.node.log) == len(leader(world).node.log)


def test_partition_with_a_name_clash_on_both_sides_then_heal() -> None:
    world = boot(5, [10, 20, 30], NAMES)
    _chat_in_lobby(world, NAMES, 1, "before")
    ann = client(world, "ann")
    world.partition([world.servers[10].addr, ann.addr])
    assert wait_until(world, lambda: world.role(world.servers[10]) == "LEADER", 5.0)
    zed_b = world.add_client("zed", side=1)
    zed_a = world.add_client("zed", side=0, owner="another zed")  # two people, one name
    assert wait_until(
        world,
        lambda: all(z.node.state.name == "SERVING" for z in (zed_a, zed_b)),
        8.0,
    )
    sent = [
        (zed_a, world.submit(zed_a.client_id, _join("lobby"))),
        (zed_b, world.submit(zed_b.client_id, _join("lobby"))),
    ]
    assert wait_until(world, lambda: all(c in s.acked for s, c in sent), 3.0)
    side_a = [say(world, "bob", "lobby", "side A"), tell(world, "cyd", "bob", "psst A")]
    side_b = [say(world, "ann", "lobby", "side B")]
    assert wait_until(world, lambda: all(acked(world, "bob", side_a[0]) for _ in [0]), 3.0)
    assert wait_until(world, lambda: acked(world, "ann", side_b[0]), 3.0)
    world.heal()
    finish(world)
    # Side B elected a newer epoch (a fresh term) while s30 kept leading its old one: the
    # newer epoch wins the merge and s30 rejoins as a backup.
    assert leader(world).server_id == 10
    assert world.role(world.servers[30]) == "BACKUP"
    zeds = [z for z in (zed_a, zed_b) if z.node.name == "zed"]
    assert len(zeds) == 1
    loser = zed_b if zeds[0] is zed_a else zed_a
    assert loser.renamed and loser.node.name != "zed"


def test_client_losing_only_its_link_cannot_depose_a_healthy_leader() -> None:
    world = boot(6, [10, 20, 30], NAMES)
    epoch = leader(world).node.epoch
    rounds = len(world.checker.rounds)
    ann = client(world, "ann")
    suspects: list[str] = []
    alive_replies: list[str] = []

    def watch(src: str, dst: str, message: object) -> bool:
        if type(message) is LeaderSuspect:
            suspects.append(dst)
        elif type(message) is LeaderAlive:
            alive_replies.append(dst)
        return False

    world.intercept = watch
    world.cut(ann.addr, world.servers[30].addr)
    world.run_for(6.0)
    assert suspects, "the cut-off client never reported the leader"
    assert alive_replies and set(alive_replies) == {ann.addr}
    assert leader(world).server_id == 30 and leader(world).node.epoch == epoch
    assert len(world.checker.rounds) == rounds  # no election at all
    world.intercept = None
    finish(world)
    assert leader(world).node.epoch == epoch


def test_stale_leader_returns_as_backup_and_its_entries_merge() -> None:
    world = boot(7, [10, 20, 30], NAMES)
    _chat_in_lobby(world, NAMES, 2, "before")
    old_epoch = leader(world).node.epoch
    ann = client(world, "ann")
    world.partition([world.servers[30].addr, ann.addr])
    assert wait_until(world, lambda: world.role(world.servers[20]) == "LEADER", 5.0)
    a = [say(world, "bob", "lobby", f"majority {i}") for i in range(3)]
    b = [say(world, "ann", "lobby", f"minority {i}") for i in range(3)]
    assert wait_until(world, lambda: all(acked(world, "bob", c) for c in a), 3.0)
    assert wait_until(world, lambda: all(acked(world, "ann", c) for c in b), 3.0)
    world.heal()
    finish(world)
    new = leader(world)
    assert new.server_id == 20 and new.node.epoch > old_epoch
    assert world.role(world.servers[30]) == "BACKUP"
    bob_got = {e.body.text for e in client(world, "bob").delivered}
    assert {f"minority {i}" for i in range(3)} <= bob_got


def _join(room: str):
    from tchat.core.messages import JoinRoom

    return JoinRoom(room)
