"""movierec_trainer.session: the standalone master addresses the recovery check asks."""

from __future__ import annotations

from movierec_trainer.session import master_addresses


def test_master_addresses_of_one_and_several_masters() -> None:
    assert master_addresses("spark://127.0.0.1:7077") == [("127.0.0.1", 7077)]
    assert master_addresses("spark://m1:7077, m2:7078") == [("m1", 7077), ("m2", 7078)]


def test_local_mode_and_malformed_urls_have_no_master() -> None:
    assert master_addresses("local[2]") == []
    assert master_addresses("spark://nohostport") == []
    assert master_addresses("spark://h:port") == []
