//! [`run`]: the scenarios one after the other, their events handed to a
//! sink; and the progress bars they draw.

use leasehold_bench::Target;

use crate::scenarios::{self, Scenario, Sizes};
use crate::{Error, Event};

/// How to run the demo.
#[derive(Debug, Clone)]
pub struct Options {
    /// The Redis to use, one server or a Redis Cluster (the CLI starts a
    /// private one of either when none is given).
    pub target: Target,
    /// Sizes of the scenarios.
    pub sizes: Sizes,
    /// Show progress bars on stderr.
    pub progress: bool,
}

/// Runs `scenarios` in order against `opts.target`, handing every event to
/// `sink` as it happens. Each scenario uses keys of its own under
/// `leasehold-demo:` (or tagged `{leasehold-demo:...}`); on a Redis Cluster
/// every key a script or a transaction touches shares the slot of what it
/// is used with.
pub async fn run(
    opts: &Options,
    scenarios: &[Scenario],
    sink: &mut dyn FnMut(&Event),
) -> Result<(), Error> {
    let client = opts.target.client().await?;
    for &scenario in scenarios {
        match scenario {
            Scenario::FlashSale => scenarios::flash_sale::run(opts, &client, sink).await?,
            Scenario::OneJob => scenarios::one_job::run(opts, sink).await?,
            Scenario::CacheStampede => scenarios::cache_stampede::run(opts, &client, sink).await?,
            Scenario::PausedHolder => scenarios::paused_holder::run(opts, &client, sink).await?,
        }
    }
    Ok(())
}

/// A progress bar of `len` steps on stderr, or a hidden one when `show` is
/// false.
pub(crate) fn bar(show: bool, len: u64, label: String) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template("  {msg:<18} [{bar:30}] {pos}/{len}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_message(label);
    bar
}
