"""The grading servers of a run (runner._Servers): a server that cannot start is given up on after two tries in a
row, a broken one is replaced, and closing the run closes every server, busy or idle."""
from __future__ import annotations

import pytest

from shortcutlab.course import load_course
from shortcutlab.grading.engine import runner
from shortcutlab.grading.engine.protocol import Job, JobResult


class FakeServer:
    """Stands in for runner.Server: ``plan`` says what each grade() does, in turn, across all fakes."""

    plan: list[str] = []
    made: list[FakeServer] = []

    def __init__(self, *args) -> None:
        self.process = None
        self.started = None
        self.closed = 0
        self.graded = 0
        FakeServer.made.append(self)

    def grade(self, job: Job, timeout: float) -> JobResult:
        what = FakeServer.plan.pop(0)
        if what == "no start":
            self.started = False
            raise RuntimeError("bwrap: cannot start")
        if what == "bug":
            raise ValueError("a bug of the grader")
        if what == "dies":
            self.started = True
            raise RuntimeError("the grading server exited")
        self.process, self.started = object(), True
        self.graded += 1
        return JobResult(id=job.id)

    def close(self) -> None:
        self.closed += 1
        self.process = None


@pytest.fixture
def servers(monkeypatch):
    monkeypatch.setattr(runner, "Server", FakeServer)
    FakeServer.plan, FakeServer.made = [], []
    return runner._Servers(load_course(), "none", [])


def job(index: int) -> Job:
    return Job(index, "00_colored_mnist", "checks.py", (), (), 1.0, 1.0, None, 512, 1000)


def test_a_server_is_reused_while_it_works_and_replaced_when_it_dies(servers):
    FakeServer.plan = ["ok", "ok", "dies", "ok"]
    assert [servers.grade(job(i)).error for i in range(3)] == [None, None, "grader error: the grading server exited"]
    assert len(FakeServer.made) == 1 and FakeServer.made[0].closed
    assert servers.grade(job(3)).id == 3 and len(FakeServer.made) == 2


def test_after_two_failed_starts_in_a_row_no_job_starts_a_server_again(servers):
    FakeServer.plan = ["no start", "no start"]
    results = [servers.grade(job(i)) for i in range(4)]
    assert all(r.grader_fault for r in results)  # the grader's fault: the gradebook grades them again next run
    errors = [r.error for r in results]
    assert errors[:2] == ["grader error: bwrap: cannot start"] * 2
    assert errors[2:] == ["grader error: no grading server could start: bwrap: cannot start"] * 2
    assert FakeServer.plan == []  # the last two jobs never tried


def test_one_failed_start_between_good_ones_does_not_give_up(servers):
    FakeServer.plan = ["no start", "ok", "no start", "ok"]
    assert [servers.grade(job(i)).error is None for i in range(4)] == [False, True, False, True]


def test_closing_the_run_closes_every_server_and_refuses_new_jobs(servers):
    FakeServer.plan = ["ok"]
    servers.grade(job(0))
    servers.close()
    assert all(server.closed for server in FakeServer.made)
    assert servers.grade(job(1)).error == "grader error: the run was stopped" and FakeServer.plan == []


def test_a_run_stopped_by_ctrl_c_closes_its_servers_and_grades_nothing_more(monkeypatch):
    monkeypatch.setattr(runner, "Server", FakeServer)
    monkeypatch.setattr(runner, "_job", lambda item, course, seed: job(item.index))
    monkeypatch.setattr(runner, "_assemble", lambda item, raw, *rest: (item.index, raw.error if raw else "not run"))
    FakeServer.plan, FakeServer.made = ["ok"] * 10, []
    heard = []

    def on_result(result):
        heard.append(result)
        raise KeyboardInterrupt

    work = [runner._Work(i, runner.Path(f"{i}.py")) for i in range(10)]
    with pytest.raises(KeyboardInterrupt):
        runner._run(work, load_course(), 0, "none", 1, on_result)
    assert len(heard) == 1 and len(FakeServer.plan) >= 8  # one job, perhaps two, ran; no more started
    assert FakeServer.made and all(server.closed for server in FakeServer.made)


def test_a_run_gives_every_submission_one_result_in_order_even_when_the_grader_breaks(monkeypatch):
    monkeypatch.setattr(runner, "Server", FakeServer)
    monkeypatch.setattr(runner, "_job", lambda item, course, seed: job(item.index))
    monkeypatch.setattr(runner, "_assemble", lambda item, raw, *rest: (item.index, raw.error if raw else item.error))
    FakeServer.plan, FakeServer.made = ["ok", "dies", "ok", "bug"], []
    work = [runner._Work(i, runner.Path(f"{i}.py")) for i in range(5)]
    work[2].error = "no such file: 2.py"
    results = runner._run(work, load_course(), 0, "none", 2, None)
    assert [index for index, _ in results] == [0, 1, 2, 3, 4] and results[2][1] == "no such file: 2.py"
    assert sorted(str(error) for index, error in results if index != 2) == [
        "None", "None", "grader error: the grading server exited",
        "grader error: the submission was not graded (ValueError: a bug of the grader)"]
