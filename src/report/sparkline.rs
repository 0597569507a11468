//! One-line sparklines (`▁▂▃▅▇█`) for terminals and page tiles.
//!
//! It must not know what the numbers count.

/// The eight block heights, lowest first.
const BLOCKS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// `values` squeezed (by averaging) or kept into at most `width` blocks, scaled so the largest
/// value is a full block; empty for no values.
pub fn sparkline(values: &[f64], width: usize) -> String {
    if values.is_empty() || width == 0 {
        return String::new();
    }
    let cells = values.len().min(width);
    let mut means = Vec::with_capacity(cells);
    for i in 0..cells {
        let lo = i * values.len() / cells;
        let hi = ((i + 1) * values.len() / cells).max(lo + 1);
        let slice = &values[lo..hi];
        means.push(slice.iter().sum::<f64>() / slice.len() as f64);
    }
    let max = means.iter().copied().fold(0.0, f64::max);
    means
        .iter()
        .map(|v| {
            if max <= 0.0 || !v.is_finite() {
                BLOCKS[0]
            } else {
                let level = (v / max * (BLOCKS.len() - 1) as f64).round() as usize;
                BLOCKS[level.min(BLOCKS.len() - 1)]
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_to_the_peak() {
        assert_eq!(sparkline(&[0.0, 1.0, 2.0, 4.0], 10), "▁▃▅█");
        assert_eq!(sparkline(&[0.0, 0.0], 10), "▁▁");
        assert_eq!(sparkline(&[], 10), "");
    }

    #[test]
    fn squeezes_long_series() {
        let values: Vec<f64> = (0..100).map(f64::from).collect();
        let line = sparkline(&values, 20);
        assert_eq!(line.chars().count(), 20);
        assert!(line.ends_with('█'));
        assert!(line.starts_with('▁'));
    }
}
