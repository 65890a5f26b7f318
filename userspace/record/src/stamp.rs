//! Record timestamps. A [`Stamp`] is one clock reading, UTC seconds and nanoseconds since the
//! Unix epoch: taking one costs no calendar arithmetic, subtracting two is integer
//! arithmetic, and writing one is a few divisions. Sessions take several per statement, so
//! this matters; `time::OffsetDateTime` did all three through general-purpose code.
//!
//! Written as RFC 3339 exactly as the `time` crate writes it (and the readers parse it):
//! `YYYY-MM-DDTHH:MM:SS`, then a `.` and the nanoseconds with trailing zeros removed when they
//! are not zero, then `Z`.

use time::OffsetDateTime;

/// A UTC timestamp with nanosecond resolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Stamp {
    secs: i64,
    nanos: u32,
}

/// A timestamp RFC 3339 cannot express (a year outside 0000–9999).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("timestamp {0} s from the Unix epoch is outside the years RFC 3339 can express")]
pub struct OutOfRange(pub i64);

impl Stamp {
    /// The Unix epoch.
    pub const UNIX_EPOCH: Stamp = Stamp { secs: 0, nanos: 0 };

    /// `secs` and `nanos` (at most 999 999 999: more carries into `secs`) after the Unix epoch.
    pub fn from_unix(secs: i64, nanos: u32) -> Self {
        Self {
            secs: secs.saturating_add(i64::from(nanos / 1_000_000_000)),
            nanos: nanos % 1_000_000_000,
        }
    }

    /// Seconds and nanoseconds after the Unix epoch.
    pub(crate) fn parts(self) -> (i64, u32) {
        (self.secs, self.nanos)
    }

    /// The system clock, now.
    pub fn now() -> Self {
        match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => Self {
                secs: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                nanos: d.subsec_nanos(),
            },
            // A clock set before 1970.
            Err(e) => {
                let d = e.duration();
                let secs = -i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
                match d.subsec_nanos() {
                    0 => Self { secs, nanos: 0 },
                    n => Self {
                        secs: secs - 1,
                        nanos: 1_000_000_000 - n,
                    },
                }
            }
        }
    }

    /// Whole microseconds from `earlier` to `self`; zero when `earlier` is later.
    pub fn micros_since(self, earlier: Stamp) -> u64 {
        let ns = (i128::from(self.secs) - i128::from(earlier.secs)) * 1_000_000_000
            + i128::from(self.nanos)
            - i128::from(earlier.nanos);
        u64::try_from(ns / 1000).unwrap_or(0)
    }

    /// Appends the RFC 3339 text (see the module docs).
    ///
    /// # Errors
    /// [`OutOfRange`] for a year outside 0000–9999; nothing is appended then.
    pub fn write_rfc3339(self, out: &mut Vec<u8>) -> Result<(), OutOfRange> {
        // A session writes thousands of records a second: the date and time of day are
        // worked out once per second and thread.
        thread_local! {
            static LAST: std::cell::Cell<Option<(i64, [u8; 19])>> =
                const { std::cell::Cell::new(None) };
        }
        let head = match LAST.with(std::cell::Cell::get) {
            Some((secs, text)) if secs == self.secs => text,
            _ => {
                let text = self.date_time()?;
                LAST.with(|c| c.set(Some((self.secs, text))));
                text
            }
        };
        out.extend_from_slice(&head);
        if self.nanos != 0 {
            let n = self.nanos as usize;
            let mut f = *b".000000000";
            f[1] = b'0' + (n / 100_000_000) as u8;
            f[2..4].copy_from_slice(pair(n / 1_000_000 % 100));
            f[4..6].copy_from_slice(pair(n / 10_000 % 100));
            f[6..8].copy_from_slice(pair(n / 100 % 100));
            f[8..10].copy_from_slice(pair(n % 100));
            let keep = f.iter().rposition(|&c| c != b'0').map_or(1, |p| p + 1);
            out.extend_from_slice(&f[..keep]);
        }
        out.push(b'Z');
        Ok(())
    }

    /// `YYYY-MM-DDTHH:MM:SS`.
    fn date_time(self) -> Result<[u8; 19], OutOfRange> {
        let days = self.secs.div_euclid(86_400);
        let secs_of_day = self.secs.rem_euclid(86_400) as usize;
        let (y, m, d) = civil_from_days(days);
        if !(0..=9999).contains(&y) {
            return Err(OutOfRange(self.secs));
        }
        let mut b = *b"0000-00-00T00:00:00";
        b[0..2].copy_from_slice(pair(y as usize / 100));
        b[2..4].copy_from_slice(pair(y as usize % 100));
        b[5..7].copy_from_slice(pair(m as usize));
        b[8..10].copy_from_slice(pair(d as usize));
        b[11..13].copy_from_slice(pair(secs_of_day / 3600));
        b[14..16].copy_from_slice(pair(secs_of_day / 60 % 60));
        b[17..19].copy_from_slice(pair(secs_of_day % 60));
        Ok(b)
    }
}

/// The two decimal digits of `v` (below 100).
fn pair(v: usize) -> &'static [u8] {
    const DIGITS: &[u8; 200] = b"0001020304050607080910111213141516171819\
        2021222324252627282930313233343536373839\
        4041424344454647484950515253545556575859\
        6061626364656667686970717273747576777879\
        8081828384858687888990919293949596979899";
    &DIGITS[v * 2..v * 2 + 2]
}

/// Year, month, day of the proleptic Gregorian calendar for `days` since 1970-01-01
/// (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

impl From<OffsetDateTime> for Stamp {
    fn from(t: OffsetDateTime) -> Self {
        Self {
            secs: t.unix_timestamp(),
            nanos: t.nanosecond(),
        }
    }
}

impl From<Stamp> for OffsetDateTime {
    /// # Panics
    /// Never for stamps taken from the clock or converted from an `OffsetDateTime`; a stamp
    /// beyond `time`'s range saturates to the Unix epoch.
    fn from(s: Stamp) -> Self {
        OffsetDateTime::from_unix_timestamp(s.secs).map_or(OffsetDateTime::UNIX_EPOCH, |t| {
            t + time::Duration::nanoseconds(i64::from(s.nanos))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::format_description::well_known::Rfc3339;

    fn text(s: Stamp) -> String {
        let mut v = Vec::new();
        s.write_rfc3339(&mut v).unwrap();
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn writes_exactly_what_time_writes() {
        // Days across leap years, century rules and both ends of the range, at fractions
        // with and without trailing zeros.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let lo = OffsetDateTime::parse("0000-01-01T00:00:00Z", &Rfc3339)
            .unwrap()
            .unix_timestamp();
        let hi = OffsetDateTime::parse("9999-12-31T23:59:59Z", &Rfc3339)
            .unwrap()
            .unix_timestamp();
        let span = u64::try_from(hi - lo).unwrap();
        let mut cases = vec![
            (0, 0),
            (-1, 999_999_999),
            (951_782_400, 0),   // 2000-02-29
            (4_107_542_400, 1), // 2100-03-01
            (1_795_609_675, 19_878_181),
            (lo, 0),
            (hi, 999_999_999),
        ];
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let secs = lo + i64::try_from(x % (span + 1)).unwrap();
            let nanos = match x % 4 {
                0 => 0,
                1 => u32::try_from(x % 1000).unwrap() * 1_000_000,
                2 => u32::try_from(x % 1_000_000).unwrap() * 1000,
                _ => u32::try_from(x % 1_000_000_000).unwrap(),
            };
            cases.push((secs, nanos));
        }
        for (secs, nanos) in cases {
            let t = OffsetDateTime::from_unix_timestamp(secs).unwrap()
                + time::Duration::nanoseconds(i64::from(nanos));
            let s = Stamp::from(t);
            assert_eq!(text(s), t.format(&Rfc3339).unwrap(), "{secs} {nanos}");
            assert_eq!(OffsetDateTime::from(s), t);
        }
    }

    #[test]
    fn years_rfc3339_cannot_express_are_refused_without_writing() {
        let t = OffsetDateTime::parse("9999-12-31T23:59:59Z", &Rfc3339).unwrap();
        let past = Stamp::from_unix(t.unix_timestamp() + 1, 0);
        let mut v = b"kept".to_vec();
        assert!(past.write_rfc3339(&mut v).is_err());
        assert_eq!(v, b"kept");
        assert!(Stamp::from_unix(-62_167_219_201, 0)
            .write_rfc3339(&mut v)
            .is_err());
        assert_eq!(Stamp::from_unix(5, 2_000_000_001), Stamp::from_unix(7, 1));
    }

    #[test]
    fn now_agrees_with_the_clock_and_intervals_are_microseconds() {
        let a = Stamp::now();
        let t = OffsetDateTime::now_utc();
        let b = Stamp::now();
        assert!(a <= Stamp::from(t) && Stamp::from(t) <= b);
        let later = Stamp {
            secs: a.secs + 2,
            nanos: 1500,
        };
        let expect = (2_000_000_000 + 1500 - i64::from(a.nanos)) / 1000;
        assert_eq!(later.micros_since(a), u64::try_from(expect).unwrap());
        assert_eq!(a.micros_since(later), 0);
    }
}
