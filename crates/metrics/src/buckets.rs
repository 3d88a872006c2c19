//! The log-linear bucket layout of an HDR histogram with lowest discernible
//! value 1, computed here so the current second can be recorded into plain
//! atomic counters (no lock) and later replayed into `hdrhistogram`
//! histograms bucket for bucket.
//!
//! The arithmetic is HdrHistogram's (bucket = powers of two above the first
//! bucket, sub-bucket = the value shifted down by the bucket); the tests check
//! it against the `hdrhistogram` crate for every significant-digit setting.

/// Bucket layout for a given number of significant digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BucketLayout {
    half_count_magnitude: u32,
    half_count: u64,
    mask: u64,
    leading_zero_count_base: u32,
    /// Counters needed to hold values up to the highest trackable one.
    len: usize,
}

impl BucketLayout {
    /// The layout for `significant_digits` (1 to 5) covering 0 to `highest`.
    pub(crate) fn new(significant_digits: u8, highest: u64) -> Self {
        let largest_single_unit = 2 * 10u64.pow(u32::from(significant_digits));
        let count_magnitude = (largest_single_unit as f64).log2().ceil() as u32;
        let half_count_magnitude = count_magnitude - 1;
        let mut layout = Self {
            half_count_magnitude,
            half_count: 1 << half_count_magnitude,
            mask: (1u64 << count_magnitude) - 1,
            leading_zero_count_base: 64 - half_count_magnitude - 1,
            len: 0,
        };
        layout.len = layout.index_of(highest) + 1;
        layout
    }

    /// Counters in the layout.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The counter index of `value`.
    #[inline]
    pub(crate) fn index_of(&self, value: u64) -> usize {
        let bucket = self.leading_zero_count_base - (value | self.mask).leading_zeros();
        let sub_bucket = value >> bucket;
        (((u64::from(bucket) + 1) << self.half_count_magnitude) + sub_bucket - self.half_count)
            as usize
    }

    /// The lowest value counted at `index`.
    pub(crate) fn value_of(&self, index: usize) -> u64 {
        let index = index as u64;
        let bucket = (index >> self.half_count_magnitude) as i64 - 1;
        let sub_bucket = (index & (self.half_count - 1)) + self.half_count;
        if bucket < 0 {
            sub_bucket - self.half_count
        } else {
            sub_bucket << bucket
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hdrhistogram::Histogram;
    use proptest::prelude::*;

    const HIGHEST: u64 = 3_600_000_000;

    fn check(layout: &BucketLayout, h: &Histogram<u64>, v: u64) -> Result<(), TestCaseError> {
        let i = layout.index_of(v);
        prop_assert!(i < layout.len(), "{v}: index {i} >= {}", layout.len());
        prop_assert_eq!(layout.value_of(i), h.lowest_equivalent(v), "value {}", v);
        Ok(())
    }

    #[test]
    fn every_small_value_and_the_extremes_map_like_hdrhistogram() {
        for digits in 1..=3 {
            let layout = BucketLayout::new(digits, HIGHEST);
            let h = Histogram::<u64>::new_with_bounds(1, HIGHEST, digits).unwrap();
            for v in (0..70_000).chain([HIGHEST - 1, HIGHEST]) {
                check(&layout, &h, v).unwrap();
            }
        }
    }

    #[test]
    fn the_layout_is_as_long_as_hdrhistograms_for_the_same_range() {
        for digits in 1..=3 {
            let layout = BucketLayout::new(digits, HIGHEST);
            let h = Histogram::<u64>::new_with_bounds(1, HIGHEST, digits).unwrap();
            assert!(layout.len() <= h.distinct_values(), "{digits}");
            assert!(layout.len() + (1 << layout.half_count_magnitude) > h.distinct_values());
        }
    }

    proptest! {
        #[test]
        fn random_values_map_like_hdrhistogram(
            values in prop::collection::vec(0u64..=HIGHEST, 1..200),
            digits in 1u8..=3,
        ) {
            let layout = BucketLayout::new(digits, HIGHEST);
            let h = Histogram::<u64>::new_with_bounds(1, HIGHEST, digits).unwrap();
            for v in values {
                check(&layout, &h, v)?;
            }
        }
    }
}
