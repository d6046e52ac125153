import gc

from infra.gc_tuning import YOUNG_THRESHOLD, collection_paused, tuned_for_service


def test_the_service_setting_freezes_start_up_and_collects_less_often() -> None:
    before = gc.get_threshold()
    with tuned_for_service():
        assert gc.get_threshold()[0] == YOUNG_THRESHOLD
        assert gc.get_freeze_count() > 0  # what exists now is never walked again
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_a_paused_block_collects_no_cycles_and_leaves_the_collector_as_it_found_it() -> None:
    assert gc.isenabled()
    with collection_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with collection_paused():
            pass
        assert not gc.isenabled()  # a caller's own pause is not undone
    finally:
        gc.enable()
