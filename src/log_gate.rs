//! A gate for log lines that an attack could repeat thousands of times a second:
//! at most one line a second goes through, and it says how many were held back.

/// One gate (per reactor and kind of line).
#[derive(Debug, Default)]
pub(crate) struct LogGate {
    /// When a line last went through (ms on the caller's clock; `None`: never).
    last: Option<u64>,
    held: u64,
}

impl LogGate {
    /// Whether a line may go now (`Some(lines held back since the last one)`), or
    /// `None` (it is counted and held back).
    pub fn pass(&mut self, now_ms: u64) -> Option<u64> {
        if self.last.is_some_and(|t| now_ms.saturating_sub(t) < 1000) {
            self.held += 1;
            return None;
        }
        self.last = Some(now_ms);
        Some(std::mem::take(&mut self.held))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_a_second_with_the_count_held_back() {
        let mut g = LogGate::default();
        assert_eq!(g.pass(0), Some(0));
        assert_eq!(g.pass(10), None);
        assert_eq!(g.pass(999), None);
        assert_eq!(g.pass(1000), Some(2));
        assert_eq!(g.pass(1500), None);
    }
}
