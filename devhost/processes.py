"""Ending the processes the dev host starts: each runs in a process group of its own."""

import os
import signal
import subprocess


def end_process_group(proc: subprocess.Popen, grace_s: float) -> None:
    """SIGTERM the group `proc` leads, SIGKILL it after `grace_s`; never touches another process."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
