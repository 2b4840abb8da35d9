"""core.formatting: figures as pages and commands show them."""

from core.formatting import duration, milliseconds, percent, usd


def test_money_keeps_fractions_of_a_cent_visible():
    assert [usd(None), usd(0), usd(0.000018), usd(0.0004), usd(12.3456)] == ["no price", "$0.00", "$0.000018", "$0.0004", "$12.35"]


def test_shares_times_and_durations():
    assert [percent(None), percent(2 / 3)] == ["—", "66.7%"]
    assert [milliseconds(None), milliseconds(203.4)] == ["—", "203 ms"]
    assert [duration(None), duration(45), duration(600)] == ["—", "45 s", "10 min"]
