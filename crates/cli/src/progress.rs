//! Progress bars for long steps (drawn only on a terminal).

use std::sync::Mutex;

use dlt::{Progress, Step};
use indicatif::{ProgressBar, ProgressStyle};

pub struct Bars {
    bar: Mutex<Option<ProgressBar>>,
}

impl Bars {
    pub fn new() -> Self {
        Bars { bar: Mutex::new(None) }
    }
}

impl Progress for Bars {
    fn step_started(&self, step: Step, detail: &str) {
        let b = ProgressBar::new_spinner();
        b.set_style(
            ProgressStyle::with_template("{spinner} {prefix:>9} {msg} {human_pos} items [{elapsed}]")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        b.set_prefix(step.to_string());
        b.set_message(detail.to_string());
        b.enable_steady_tick(std::time::Duration::from_millis(200));
        if let Ok(mut g) = self.bar.lock() {
            *g = Some(b);
        }
    }
    fn items(&self, _step: Step, count: u64) {
        if let Ok(g) = self.bar.lock()
            && let Some(b) = g.as_ref()
        {
            b.set_position(count);
        }
    }
    fn step_finished(&self, _step: Step) {
        if let Ok(mut g) = self.bar.lock()
            && let Some(b) = g.take()
        {
            b.finish_and_clear();
        }
    }
}
