"""`flowrun run`'s leader election flags: off by default; the Lease's namespace from the flag or the
pod's own; the identity from the pod's name; timings that keep a leader from acting after another
may take over; a clear error naming the flag otherwise. Its rate limit flags: the Settings'
defaults, 0 or less for no limit, a clear error naming the flag for a bad value."""

from __future__ import annotations

import argparse
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kopf
import pytest

from flowrun import cli, structured_logging
from flowrun.controller.settings import LeaderElection, Settings

Parse = Callable[..., argparse.Namespace]


@pytest.fixture
def parse(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Parse:
    """The arguments `flowrun run -n team FLAGS` hands _run, outside a pod (no namespace file)."""
    monkeypatch.setattr(cli, "POD_NAMESPACE_FILE", tmp_path / "namespace")
    seen: list[argparse.Namespace] = []

    def run(args: argparse.Namespace) -> int:
        seen.append(args)
        return 0

    monkeypatch.setattr(cli, "_run", run)

    def parsed(*flags: str) -> argparse.Namespace:
        assert cli.main(["run", "-n", "team", *flags]) == 0
        return seen[-1]

    return parsed


def test_off_by_default(parse: Parse) -> None:
    assert cli.leader_election(parse()) is None
    assert cli.leader_election(parse("--no-leader-election")) is None


def test_defaults_in_a_pod(parse: Parse, monkeypatch: pytest.MonkeyPatch) -> None:
    cli.POD_NAMESPACE_FILE.write_text("flowrun-system\n")
    monkeypatch.setenv("POD_NAME", "flowrun-operator-7d9f-abcde")
    election = cli.leader_election(parse("--leader-election"))
    assert election == LeaderElection(
        "flowrun-system", "flowrun-operator", "flowrun-operator-7d9f-abcde", 15, 10.0, 2.0
    )


def test_flags_outside_a_pod(parse: Parse, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POD_NAME", raising=False)
    args = parse(
        "--leader-election",
        "--leader-election-namespace=ops",
        "--leader-election-lease-name=mine",
        "--leader-election-lease-seconds=6",
        "--leader-election-renew-deadline=4",
        "--leader-election-retry=0.5",
    )
    election = cli.leader_election(args)
    assert election == LeaderElection("ops", "mine", f"{socket.gethostname()}-{os.getpid()}", 6, 4.0, 0.5)


def test_outside_a_pod_the_namespace_is_required(parse: Parse) -> None:
    with pytest.raises(cli.UsageError, match=r"^--leader-election-namespace: required outside a pod"):
        cli.leader_election(parse("--leader-election"))


@pytest.mark.parametrize(
    "timings",
    [
        ("--leader-election-lease-seconds=10",),  # not above the renew deadline (10)
        ("--leader-election-renew-deadline=2",),  # not above the retry period (2)
        ("--leader-election-lease-seconds=5", "--leader-election-renew-deadline=6"),
    ],
)
def test_timings_must_stop_a_leader_before_another_may_take_over(parse: Parse, timings: tuple[str, ...]) -> None:
    with pytest.raises(cli.UsageError, match=r"need lease > renew deadline > retry > 0"):
        cli.leader_election(parse("--leader-election", "--leader-election-namespace=ops", *timings))


def test_the_command_refuses_them_naming_the_flag(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "POD_NAMESPACE_FILE", tmp_path / "namespace")
    assert cli.main(["run", "-n", "team", "--leader-election"]) == 2
    assert capsys.readouterr().err == (
        "flowrun run: --leader-election-namespace: required outside a pod (the Lease's namespace)\n"
    )


def test_kopf_runs_standalone_so_its_peering_pauses_no_replica(monkeypatch: pytest.MonkeyPatch) -> None:
    """kopf's peering would pause a whole operator (its caches with it) while another runs: the
    replicas elect through the Lease instead, and every one keeps its caches warm."""
    ran: dict[str, Any] = {}

    def run(**kwargs: Any) -> None:
        ran.update(kwargs)

    monkeypatch.setattr(kopf, "run", run)
    monkeypatch.setattr(structured_logging, "configure", lambda level, fmt: None)
    assert cli.main(["run", "-n", "team", "--leader-election", "--leader-election-namespace=ops"]) == 0
    assert ran["standalone"] is True and "peering_name" not in ran
    election = ran["memo"].settings.leader_election
    assert (election.namespace, election.lease_name) == ("ops", "flowrun-operator")


def test_the_rate_limit_flags_default_to_the_settings_and_reach_them(monkeypatch: pytest.MonkeyPatch) -> None:
    ran: dict[str, Any] = {}
    monkeypatch.setattr(kopf, "run", lambda **kwargs: ran.update(kwargs))
    monkeypatch.setattr(structured_logging, "configure", lambda level, fmt: None)
    assert cli.main(["run", "-n", "team"]) == 0
    settings = ran["memo"].settings
    assert (settings.qps, settings.burst) == (Settings.qps, Settings.burst) == (200.0, 400)
    assert cli.main(["run", "-n", "team", "--qps", "12.5", "--burst", "30"]) == 0
    assert (ran["memo"].settings.qps, ran["memo"].settings.burst) == (12.5, 30)


def test_the_resync_period_defaults_to_the_settings_and_reaches_them(parse: Parse) -> None:
    assert parse().resync_seconds == Settings.resync_seconds == 30.0
    assert parse("--resync-seconds", "2.5").resync_seconds == 2.5


@pytest.mark.parametrize("value", ["0", "-1", "3601", "soon"])
def test_a_bad_resync_period_is_refused_naming_the_flag(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["run", "-n", "team", "--resync-seconds", value])
    assert exit_.value.code == 2
    assert "argument --resync-seconds" in capsys.readouterr().err


QPS_RULE = "must be a number of requests a second, at most 100000 (0 or less: no limit)"
BURST_RULE = "must be a whole number of requests from 1 to 100000"


@pytest.mark.parametrize("qps", ["0", "-1"])
def test_qps_zero_or_less_is_no_limit(parse: Parse, qps: str) -> None:
    assert parse("--qps", qps).qps == float(qps)


@pytest.mark.parametrize(
    ("flags", "complaint"),
    [
        (["--qps", "fast"], f"argument --qps: {QPS_RULE}, got 'fast'"),
        (["--qps", "nan"], f"argument --qps: {QPS_RULE}, got 'nan'"),
        (["--qps", "inf"], f"argument --qps: {QPS_RULE}, got 'inf'"),
        (["--qps", "100001"], f"argument --qps: {QPS_RULE}, got '100001'"),
        (["--burst", "0"], f"argument --burst: {BURST_RULE}, got '0'"),
        (["--burst", "2.5"], f"argument --burst: {BURST_RULE}, got '2.5'"),
        (["--burst", "100001"], f"argument --burst: {BURST_RULE}, got '100001'"),
    ],
)
def test_bad_rate_limit_flags_are_refused_naming_the_flag(
    flags: list[str], complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["run", "-n", "team", *flags])
    assert exit_.value.code == 2
    assert complaint in capsys.readouterr().err
