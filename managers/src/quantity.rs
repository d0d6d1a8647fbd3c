//! Resource amounts printed the way the API machinery prints a `resource.Quantity` built from a
//! whole number: binary-SI amounts with the largest `Ki`/`Mi`/... suffix that divides them
//! exactly (`104857600` → `100Mi`, `1536` → `1536`), decimal-SI amounts with the largest power
//! of 1000 (`5000` → `5k`), amounts below 1024 always in decimal. The eviction messages and
//! events quote thresholds, usage and requests in this form.

/// How an amount is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// Powers of 1024 (`Ki`, `Mi`, ...): bytes.
    BinarySI,
    /// Powers of 1000 (`k`, `M`, ...): counts.
    DecimalSI,
}

/// Divides `v` by `base` while it divides exactly; returns the rest and how many times.
fn remove_factors(v: i64, base: i64) -> (i64, u32) {
    let mut v = v;
    let mut times = 0;
    while v != 0 && v % base == 0 {
        v /= base;
        times += 1;
    }
    (v, times)
}

/// `v` in canonical decimal-SI form.
fn decimal(v: i64) -> String {
    let (mut m, mut exp) = remove_factors(v, 10);
    // The exponent must be a multiple of 3: give the mantissa back what is left over.
    while exp % 3 != 0 {
        match m.checked_mul(10) {
            Some(x) => m = x,
            None => return v.to_string(),
        }
        exp -= 1;
    }
    let suffix = match exp {
        0 => "",
        3 => "k",
        6 => "M",
        9 => "G",
        12 => "T",
        15 => "P",
        18 => "E",
        _ => return v.to_string(),
    };
    format!("{m}{suffix}")
}

/// `v` in canonical form for `format`.
pub fn format(v: i64, format: Format) -> String {
    match format {
        Format::DecimalSI => decimal(v),
        Format::BinarySI if v > -1024 && v < 1024 => decimal(v),
        Format::BinarySI => {
            let (m, exp) = remove_factors(v, 1024);
            let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
            match suffix.get(exp as usize) {
                Some(s) => format!("{m}{s}"),
                None => v.to_string(),
            }
        }
    }
}

/// Bytes, binary SI.
pub fn bytes(v: i64) -> String {
    format(v, Format::BinarySI)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_amounts_take_the_largest_exact_suffix() {
        assert_eq!(bytes(104857600), "100Mi");
        assert_eq!(bytes(1 << 30), "1Gi");
        assert_eq!(bytes(1536), "1536");
        assert_eq!(bytes(3 * 1024 * 1024 + 4096), "3076Ki");
        assert_eq!(bytes(123456789), "123456789");
        assert_eq!(bytes(0), "0");
        assert_eq!(bytes(1000), "1k");
        assert_eq!(bytes(512), "512");
        assert_eq!(bytes(-2048), "-2Ki");
    }

    #[test]
    fn decimal_amounts_use_powers_of_a_thousand() {
        assert_eq!(format(5000, Format::DecimalSI), "5k");
        assert_eq!(format(1500, Format::DecimalSI), "1500");
        assert_eq!(format(16338109, Format::DecimalSI), "16338109");
        assert_eq!(format(2_000_000, Format::DecimalSI), "2M");
        assert_eq!(format(0, Format::DecimalSI), "0");
        assert_eq!(format(120, Format::DecimalSI), "120");
    }
}
