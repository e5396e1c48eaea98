"""Bad measurements and configurations are refused with a ValueError that names what was wrong,
never a hang or a failure later while scoring."""

import math
import re

import pytest

from metron.cli import main
from metron.deadlines import DeadlineConfig
from metron.fluidity import count_deadlines, decode_miss_rates, min_tbt_deadline
from metron.metrics import RequestTimes, request_records


@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan, 1e300])
def test_non_finite_token_times_are_refused_not_bisected_forever(bad: float) -> None:
    with pytest.raises(ValueError, match="times must be finite"):
        min_tbt_deadline([0.5, bad])
    with pytest.raises(ValueError, match="times must be finite"):
        decode_miss_rates([0.5, bad], [0.1])
    with pytest.raises(ValueError, match="times must be finite"):
        count_deadlines(0.0, [0.5, bad], 1.0, 0.1)
    measured = RequestTimes(id=4, arrival_s=0.0, prompt_tokens=1, token_times_s=[0.5, bad])
    with pytest.raises(ValueError, match=re.escape(f"request 4: token_times_s must be finite times, got {bad}")):
        request_records([measured], DeadlineConfig())
    on_server = RequestTimes(id=5, arrival_s=0.0, prompt_tokens=1, token_times_s=[0.5], server_token_times_s=[bad])
    with pytest.raises(ValueError, match="request 5: server_token_times_s must be finite"):
        request_records([on_server], DeadlineConfig())


def test_a_tbt_deadline_too_small_to_score_is_refused_up_front(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match="tbt_s.*at least 1e-06, got 1e-10"):
        DeadlineConfig(tbt_s=1e-10)
    # The CLI says so before it reaches for the target (port 9 would be unreachable: exit 3).
    assert main(["run", "--url", "http://127.0.0.1:9", "--model", "m", "--tbt-deadline", "1e-10",
                 "--output-dir", "unused"]) == 2
    assert "TBT deadline (tbt_s) must be a positive number of seconds, at least 1e-06" in capsys.readouterr().err
