"""The day-of-year convention of the time series: one rule, used by extraction, training and the maps.

A season may cross a year boundary (a winter crop sown in October and harvested in July). Its observations
are numbered by the day count from the 1st of January of the season's *reference year* (the year in which
the season starts), starting at 1:

    doy = (acquisition date - 1 January of the reference year) in days + 1

so 2022-01-01 is 1 and 2022-12-31 is 365 in a season starting in 2022, and 2023-01-01 is 366 in that
same season: the values increase with time through the year boundary (an encoder sees the true
intervals between observations), and equal the calendar day of year for dates of the reference year.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

from decloud.core.errors import InvalidArgumentError

#: Largest day number a series may hold: two years from the reference year (a season is at most one year
#: long, and may start on the last day of its reference year).
MAX_DOY = 731


def day_of_season(acquired: date | datetime, reference_year: int) -> int:
    """The day number of ``acquired`` counted from 1 January of ``reference_year`` (1 on that day)."""
    day = acquired.date() if isinstance(acquired, datetime) else acquired
    number = (day - date(reference_year, 1, 1)).days + 1
    if not 1 <= number <= MAX_DOY:
        raise InvalidArgumentError(
            f"{day.isoformat()} is not within two years from 1 January {reference_year} (day number {number})"
        )
    return number


def days_of_season(dates: Sequence[date | datetime], reference_year: int | None = None) -> list[int]:
    """Day numbers of ``dates`` (reference year: that of the earliest date unless given)."""
    if not dates:
        return []
    year = min(dates).year if reference_year is None else reference_year
    return [day_of_season(day, year) for day in dates]
