import io
import os
import signal
from pathlib import Path

import pytest

from training.console import ConsoleReporter


def test_non_terminal_output_gets_one_line_per_progress_call_with_lerobot_short_names():
    stream = io.StringIO()
    reporter = ConsoleReporter(stream)
    reporter.progress(10, 100, {"train/loss": 0.5, "train/grad_norm": 1.25, "train/lr": 1e-3})
    reporter.log("hello")
    reporter.checkpoint(10, Path("/runs/x/checkpoints/000010"))
    reporter.progress(100, 100, {"train/loss": 0.1, "val/loss": 0.2, "eval/pc_success": 90.0})
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("[##") and "step 10/100 (10%)" in lines[0]
    assert "loss:0.5000" in lines[0] and "grdn:1.250" in lines[0] and "lr:1.0e-03" in lines[0]
    assert lines[1] == "hello"
    assert lines[2] == "checkpoint 10 saved to /runs/x/checkpoints/000010"
    assert "step 100/100 (100%)" in lines[3] and "val:0.2000" in lines[3] and "success%:90.0" in lines[3]
    assert "eta" in lines[3]


def test_stop_is_requested_by_the_interrupt_handler_not_by_default():
    reporter = ConsoleReporter(io.StringIO())
    assert not reporter.should_stop()
    reporter.request_stop()
    assert reporter.should_stop()


def test_first_ctrl_c_asks_the_run_to_stop_and_the_second_interrupts():
    stream = io.StringIO()
    reporter = ConsoleReporter(stream)
    # whatever was installed before comes back (SIG_IGN, not Python's default, when started in the background)
    before = signal.getsignal(signal.SIGINT)
    with reporter.stop_on_interrupt():
        os.kill(os.getpid(), signal.SIGINT)
        assert reporter.should_stop()
        assert "stopping after this step" in stream.getvalue()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before
