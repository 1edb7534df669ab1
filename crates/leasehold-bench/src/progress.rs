//! One indicatif progress bar per workload, on stderr.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Makes bars, or hidden ones when progress is off.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Progress {
    on: bool,
}

impl Progress {
    pub(crate) fn new(on: bool) -> Progress {
        Progress { on }
    }

    /// A bar of `len` steps labelled `label` (e.g. `W3 16 workers, one name`).
    /// indicatif draws nothing when stderr is not a terminal.
    pub(crate) fn bar(&self, len: u64, label: &str, unit: &str) -> ProgressBar {
        if !self.on {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
        let template = format!("{{prefix:<34}} [{{bar:30}}] {{pos:>9}}/{{len}} {unit} {{msg}}");
        bar.set_style(
            ProgressStyle::with_template(&template)
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix(label.to_owned());
        bar
    }
}
