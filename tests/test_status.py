"""Statuses are string enums on every supported Python (3.10 has no enum.StrEnum): they compare, hash, print and
serialise as their values."""
import json

from shortcutlab.grading.status import AnswerStatus, Status, SubmissionStatus


def test_a_status_equals_hashes_prints_and_serialises_as_its_value():
    for status in [*Status, *SubmissionStatus, *AnswerStatus]:
        assert status == status.value and hash(status) == hash(status.value)
        assert str(status) == f"{status}" == status.value and f"{status:>30}" == f"{status.value:>30}"
        assert json.loads(json.dumps({"status": status})) == {"status": status.value}
    assert Status("passed") is Status.PASSED and {"passed": 1}[Status.PASSED] == 1
