import gc

from infra.gc_tuning import YOUNG_THRESHOLD, tuned_for_service


def test_the_service_setting_freezes_start_up_and_collects_less_often() -> None:
    before = gc.get_threshold()
    with tuned_for_service():
        assert gc.get_threshold()[0] == YOUNG_THRESHOLD
        assert gc.get_freeze_count() > 0  # what exists now is never walked again
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
