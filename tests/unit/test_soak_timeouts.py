"""What the soak makes of a run that timed out: the timeouts read from its status, and what it says
about its blocks when its outcome is not the model's."""

from __future__ import annotations

from bench.soak.runner import said_in, timed_out


def test_the_timeouts_of_blocks_tasks_and_the_run_are_read_from_a_final_status() -> None:
    status = {
        "phase": "Failed",
        "reason": "RunDeadlineExceeded",
        "message": "ran longer than activeDeadlineSeconds=60",
        "resources": {
            "r0": {"phase": "SetupFailed", "reason": "SetupTimeout", "message": "not Ready within timeoutSeconds=300"},
            "r1": {"phase": "CleanedUp"},
        },
        "tasks": {
            "a": {
                "phase": "Failed",
                "reason": "DeadlineExceeded",
                "message": "ran longer than activeDeadlineSeconds=5",
            },
            "b": {"phase": "Failed", "reason": "PendingTimeout", "message": "not started"},
            "c": {"phase": "Failed", "reason": "Error", "message": "exit code 1"},
            "d": {"phase": "Skipped", "reason": "SetupFailed"},
        },
    }
    assert timed_out(status) == [
        "run RunDeadlineExceeded: ran longer than activeDeadlineSeconds=60",
        "resource r0 SetupTimeout: not Ready within timeoutSeconds=300",
        "task a DeadlineExceeded: ran longer than activeDeadlineSeconds=5",
        "task b PendingTimeout: not started",
    ]


def test_a_run_that_failed_otherwise_shows_no_timeout() -> None:
    status = {
        "phase": "Failed",
        "message": "task c failed",
        "resources": {"r0": {"phase": "CleanupFailed", "reason": "JobFailed", "message": "cleanup job failed"}},
        "tasks": {"c": {"phase": "Failed", "reason": "Error", "message": "exit code 1"}},
    }
    assert timed_out(status) == []
    # A failure's evidence: the run's message and each block that says why it ended as it did.
    assert said_in(status) == " [run: task c failed; resource r0 CleanupFailed JobFailed: cleanup job failed]"
    assert said_in({"phase": "Succeeded", "resources": {"r0": {"phase": "CleanedUp"}}}) == ""
