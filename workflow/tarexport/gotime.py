"""Go's time.Time as Docker's JSON holds it: RFC 3339 parsed to the wall clock and
offset Go keeps (at most nanoseconds), and written back as `MarshalJSON` does (trailing
zeros of the fraction trimmed). Any time Go can parse is accepted, year 0 and 9999 too."""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass

_TIME_RE = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:(Z)|([+-])(\d{2}):(\d{2}))")


@dataclass(frozen=True)
class GoTime:
    """A time.Time as Go keeps it after parsing RFC 3339: wall clock plus offset."""

    year: int = 1
    month: int = 1
    day: int = 1
    hour: int = 0
    minute: int = 0
    second: int = 0
    nanosecond: int = 0
    offset_minutes: int = 0

    @classmethod
    def parse(cls, text: str) -> GoTime:
        match = _TIME_RE.fullmatch(text)
        if not match:
            raise ValueError(f"time {text!r} is not RFC 3339")
        year, month, day, hour, minute, second, frac, _z, sign, oh, om = match.groups()
        if not (
            1 <= int(month) <= 12
            and 1 <= int(day) <= calendar.monthrange(max(int(year), 1), int(month))[1]
            and int(hour) < 24
            and int(minute) < 60
            and int(second) < 60
            and int(oh or 0) < 24
            and int(om or 0) < 60
        ):
            raise ValueError(f"time {text!r} is out of range")
        # Go keeps at most nanosecond precision and drops further digits.
        nanos = int((frac or "")[:9].ljust(9, "0")) if frac else 0
        offset = 0
        if sign:
            offset = int(oh) * 60 + int(om)
            if sign == "-":
                offset = -offset
        return cls(int(year), int(month), int(day), int(hour), int(minute), int(second), nanos, offset)

    def format(self) -> str:
        """Go's RFC3339Nano: trailing zeros of the fraction trimmed, Z for offset 0."""
        text = f"{self.year:04d}-{self.month:02d}-{self.day:02d}T{self.hour:02d}:{self.minute:02d}:{self.second:02d}"
        if self.nanosecond:
            text += "." + f"{self.nanosecond:09d}".rstrip("0")
        if self.offset_minutes == 0:
            return text + "Z"
        sign = "+" if self.offset_minutes > 0 else "-"
        hours, minutes = divmod(abs(self.offset_minutes), 60)
        return f"{text}{sign}{hours:02d}:{minutes:02d}"

    def unix_seconds(self) -> int:
        """Seconds since the epoch, as a tar mtime (Go truncates to the second)."""
        wall = _days_from_civil(self.year, self.month, self.day) * 86400
        wall += self.hour * 3600 + self.minute * 60 + self.second
        return wall - self.offset_minutes * 60


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 in the proleptic Gregorian calendar, year 0 included (Go
    parses 0000-01-01; Python's calendar stops at year 1)."""
    year -= month <= 2
    era, year_of_era = divmod(year, 400)
    day_of_year = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146097 + day_of_era - 719468


UNIX_EPOCH = GoTime(1970, 1, 1)
