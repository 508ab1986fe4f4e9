"""Progress bars only where someone watches: a log file or a pipe gets one summary line per loop."""
import io

import torch

from shortcutlab.progress import Progress, interactive
from shortcutlab.train import fit


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_file_gets_one_line_with_the_count_time_and_latest_figures():
    log = io.StringIO()
    with Progress(4, desc="cheater", unit="batch", stream=log) as bar:
        for _ in range(4):
            bar.update(1)
            bar.set_postfix(accuracy="0.981")
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and len(lines) == 1, log.getvalue()
    assert lines[0].startswith("cheater: 4/4 batch in ") and lines[0].endswith(" s (accuracy 0.981)")


def test_a_terminal_gets_a_live_bar_and_quiet_gets_nothing():
    terminal, quiet = Terminal(), io.StringIO()
    assert interactive(terminal) and not interactive(quiet)
    with Progress(3, desc="train SAE", unit="epoch", stream=terminal) as bar:
        bar.update(3)
    assert "\r" in terminal.getvalue() and "3/3" in terminal.getvalue()
    with Progress(3, desc="train SAE", unit="epoch", quiet=True, stream=quiet) as bar:
        bar.update(3)
    assert quiet.getvalue() == ""


def test_an_interrupted_loop_still_reports_how_far_it_got_once():
    log = io.StringIO()
    bar = Progress(10, desc="grl", unit="batch", stream=log)
    bar.update(3)
    bar.close()
    bar.close()
    assert log.getvalue().count("\n") == 1 and log.getvalue().startswith("grl: 3/10 batch")


def test_fit_into_a_pipe_writes_one_line_per_model_and_no_carriage_returns(capsys):
    images, labels = torch.rand(16, 3, 28, 28), torch.randint(0, 10, (16,))
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 28 * 28, 10))
    fit(model, (images, labels, labels), epochs=2, batch_size=8, seed=0, desc="tiny")
    err = capsys.readouterr().err
    assert "\r" not in err and err.count("\n") == 1 and err.startswith("tiny: 4/4 batch in "), err
