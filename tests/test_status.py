"""Statuses are string enums on every supported Python (3.10 has no enum.StrEnum): they compare, hash, print and
serialise as their values."""
import json

import pytest

from shortcutlab.grading.results import CheckResult, LoadOutcome, SubmissionResult
from shortcutlab.grading.status import AnswerStatus, LoadStatus, Status, SubmissionStatus
from shortcutlab.grading.store.gradebook import result_from_json, result_to_json
from shortcutlab.grading.wording import load_failure


def test_a_status_equals_hashes_prints_and_serialises_as_its_value():
    for status in [*Status, *SubmissionStatus, *AnswerStatus, *LoadStatus]:
        assert status == status.value and hash(status) == hash(status.value)
        assert str(status) == f"{status}" == status.value and f"{status:>30}" == f"{status.value:>30}"
        assert json.loads(json.dumps({"status": status})) == {"status": status.value}
    assert Status("passed") is Status.PASSED and {"passed": 1}[Status.PASSED] == 1


@pytest.mark.parametrize("data", [None, "ok", [], {}, {"status": "fine"}, {"status": ["ok"]}, {"cell": 3}])
def test_a_load_outcome_is_read_only_from_a_dict_with_a_known_status(data):
    assert LoadOutcome.from_dict(data) is None


def test_a_load_outcome_reads_a_server_s_odd_cell_and_message_leniently():
    assert LoadOutcome.from_dict({"status": "timeout", "cell": True, "message": None}) == \
        LoadOutcome(LoadStatus.TIMEOUT, None, "")
    assert LoadOutcome.from_dict({"status": "error", "cell": 0}).cell is None  # 0: no notebook cell
    outcome = LoadOutcome.from_dict({"status": "error", "cell": 4, "message": "NameError: x"})
    assert outcome == LoadOutcome(LoadStatus.ERROR, 4, "NameError: x") and outcome.failed
    assert not LoadOutcome(LoadStatus.NOT_RUN).failed and not LoadOutcome().failed


def test_a_stored_result_comes_back_with_its_load_outcome_typed():
    result = SubmissionResult("a.py", "90_toy", None, (CheckResult("t", "add", 0, 1, Status.FAILED, "x"),), 1.0,
                              load=LoadOutcome(LoadStatus.TIMEOUT, 2, "cell 2 was stopped"))
    back = result_from_json(result_to_json(result))
    assert back == result and back.load.status is LoadStatus.TIMEOUT and back.status == SubmissionStatus.TIMEOUT
    assert result.to_dict()["load"] == {"status": "timeout", "cell": 2, "message": "cell 2 was stopped"}


@pytest.mark.parametrize("outcome, instructor, student", [
    (LoadOutcome(), "", ""),
    (LoadOutcome(LoadStatus.NOT_RUN, None, "unreadable"), "", ""),  # an error of the file, not of its loading
    (LoadOutcome(LoadStatus.TIMEOUT, 3, "stopped"), "cell 3 timed out while loading",
     "Cell 3 did not finish in time while loading"),
    (LoadOutcome(LoadStatus.ERROR, None, "killed"), "its code raised while loading",
     "Your code raised an error while loading"),
])
def test_a_load_failure_is_told_once_to_the_instructor_and_to_the_student(outcome, instructor, student):
    assert load_failure(outcome, for_student=False) == instructor
    assert load_failure(outcome, for_student=True) == student
