//! The short size geom(8) prints after a mediasize, e.g. `1048576 (1.0M)`.
//!
//! geom(8) calls libutil's `humanize_number(buf, 5, size, "", HN_AUTOSCALE,
//! HN_B | HN_NOSPACE | HN_DECIMAL)`; this module reproduces that one call, rounding and
//! all, so the text matches FreeBSD byte for byte. It owns nothing else: no other flag
//! combination, no locale (geom(8) never sets one, so the decimal point is `.`).
//!
//! In short: steps of 1024 with the prefixes `B K M G T P E`; at most three digits (two
//! for a negative number), so 1000 bytes already print as `1.0K`; one decimal place below
//! ten units unless the remainder is at least 95% of a unit (10188 bytes is `9.9K`, 10189
//! is `10K`); and, like the C code writing into a 5-byte buffer, never more than four
//! characters, so a negative `-1.5K` loses its `K` (and `-100` prints `0.1K`).

/// The caller's buffer size, terminating NUL included.
const BUF_LEN: usize = 5;
/// Each prefix step.
const DIVISOR: i64 = 1024;
/// A remainder at or above this (95% of [`DIVISOR`], rounded up) rounds to the next
/// whole number instead of printing `9.x`.
const DECIMAL_CUT: i64 = 973;
/// The largest prefix index.
const MAX_SCALE: usize = 6;
/// The unit for each scale; `B` because of `HN_B`.
const PREFIXES: [&str; MAX_SCALE + 1] = ["B", "K", "M", "G", "T", "P", "E"];

/// The humanized form of `size`, as geom(8)'s `list` prints it in parentheses.
pub fn mediasize(size: i64) -> String {
    let negative = size < 0;
    let sign: i64 = if negative { -1 } else { 1 };
    // The C code negates in place; i64::MIN stays negative there as it does here.
    let magnitude = size.wrapping_abs();
    let (quotient, remainder, scale) = autoscale(magnitude, digit_limit(negative));
    let mut text = if scale > 0 && shows_decimal(quotient, remainder) {
        let tenths = (remainder * 10 + DIVISOR / 2) / DIVISOR;
        let whole = quotient + tenths / 10;
        format!("{}.{}{}", sign * whole, tenths % 10, PREFIXES[scale])
    } else {
        let rounded = quotient + (remainder + DIVISOR / 2) / DIVISOR;
        format!("{}{}", sign.wrapping_mul(rounded), PREFIXES[scale])
    };
    // snprintf into the 5-byte buffer keeps four characters; all of them are ASCII.
    text.truncate(BUF_LEN - 1);
    text
}

/// The first value that no longer fits in the columns left for digits: the buffer less
/// its NUL, the prefix letter and, for a negative number, the sign.
fn digit_limit(negative: bool) -> i64 {
    let reserved = if negative { 3 } else { 2 };
    10_i64.pow((BUF_LEN - reserved) as u32)
}

/// Divides by 1024 until the value fits below `limit`, once more when rounding the last
/// step up would reach `limit`. Returns quotient, last remainder and scale.
fn autoscale(mut quotient: i64, limit: i64) -> (i64, i64, usize) {
    let mut remainder = 0;
    let mut scale = 0;
    while scale < MAX_SCALE
        && (quotient >= limit || (quotient == limit - 1 && remainder >= DIVISOR / 2))
    {
        remainder = quotient % DIVISOR;
        quotient /= DIVISOR;
        scale += 1;
    }
    (quotient, remainder, scale)
}

/// Whether the scaled value is small enough for one decimal place (`HN_DECIMAL`).
fn shows_decimal(quotient: i64, remainder: i64) -> bool {
    quotient < 9 || (quotient == 9 && remainder < DECIMAL_CUT)
}

#[cfg(test)]
mod tests {
    use super::mediasize;

    /// Expected strings produced by FreeBSD's `humanize_number` with geom(8)'s arguments
    /// (taken from the C function compiled as an oracle, outside this tree).
    const TABLE: &[(i64, &str)] = &[
        (0, "0B"),
        (1, "1B"),
        (9, "9B"),
        (10, "10B"),
        (99, "99B"),
        (100, "100B"),
        (512, "512B"),
        (999, "999B"),
        (1000, "1.0K"),
        (1001, "1.0K"),
        (1023, "1.0K"),
        (1024, "1.0K"),
        (1025, "1.0K"),
        (1535, "1.5K"),
        (1536, "1.5K"),
        (9215, "9.0K"),
        (9216, "9.0K"),
        (10137, "9.9K"),
        (10138, "9.9K"),
        (10188, "9.9K"),
        (10189, "10K"),
        (10239, "10K"),
        (10240, "10K"),
        (10752, "11K"),
        (102400, "100K"),
        (1022976, "999K"),
        (1023487, "999K"),
        (1023488, "1.0M"),
        (1047552, "1.0M"),
        (1048063, "1.0M"),
        (1048064, "1.0M"),
        (1048575, "1.0M"),
        (1048576, "1.0M"),
        (1572864, "1.5M"),
        (10485760, "10M"),
        (67108864, "64M"),
        (104857600, "100M"),
        (536870912, "512M"),
        (1048575999, "1.0G"),
        (1073741312, "1.0G"),
        (1073741824, "1.0G"),
        (1099511627776, "1.0T"),
        (1125899906842624, "1.0P"),
        (1152921504606846976, "1.0E"),
        (i64::MAX, "8.0E"),
        (-1, "-1B"),
        (-100, "0.1K"),
        (-1536, "-1.5"),
        (i64::MIN, "-922"),
    ];

    #[test]
    fn matches_freebsd_table() {
        for &(size, expected) in TABLE {
            assert_eq!(mediasize(size), expected, "humanize {size}");
        }
    }

    #[test]
    fn compat_example_one_mebibyte() {
        assert_eq!(mediasize(1_048_576), "1.0M");
    }

    #[test]
    fn never_longer_than_four_characters() {
        let mut size: i64 = 1;
        while size < i64::MAX / 3 {
            for probe in [size - 1, size, size + 1, -size] {
                assert!(mediasize(probe).len() <= 4, "{probe}");
            }
            size *= 3;
        }
    }
}
