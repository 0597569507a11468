//! Seeds: how one `--seed` becomes an independent-looking seed for every request and every
//! batched request. It knows nothing else.

/// SplitMix64: spreads consecutive numbers into independent-looking seeds.
pub fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}
