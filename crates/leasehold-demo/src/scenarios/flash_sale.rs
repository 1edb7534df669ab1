//! Flash sale: limited stock sold four ways (the bench's W4 strategies);
//! only the naive one oversells.

use leasehold::Client;
use leasehold_bench::flash_sale::{self, Sale, Strategy};

use crate::run::{Options, bar};
use crate::{Error, Event, Scenario};

/// Sells `stock` units to `buyers` buyers once per strategy, one event
/// per strategy.
pub(crate) async fn run(
    opts: &Options,
    client: &Client,
    sink: &mut dyn FnMut(&Event),
) -> Result<(), Error> {
    sink(&Event::Start {
        scenario: Scenario::FlashSale,
        about: format!(
            "{} units, {} buyers, four ways; only the naive one may oversell",
            opts.sizes.stock, opts.sizes.buyers
        ),
    });
    let sale = Sale {
        stock: opts.sizes.stock,
        buyers: opts.sizes.buyers,
        // Tagged: the lease (`<key>:lease`) lands in the stock's slot on
        // a Redis Cluster, so one master serves the whole sale.
        key: "{leasehold-demo:flash}:stock".into(),
        ..Sale::default()
    };
    for strategy in Strategy::ALL {
        let progress = bar(opts.progress, sale.stock, format!("{strategy}"));
        let r = flash_sale::run(strategy, client, &opts.target, &sale, &mut |n| {
            progress.set_position(n)
        })
        .await?;
        progress.finish_and_clear();
        sink(&Event::FlashSale {
            strategy: strategy.name(),
            stock: sale.stock,
            sold: r.sold,
            oversold: r.oversold,
            seconds: r.elapsed.as_secs_f64(),
            conflicts: r.watch_aborts,
            per_buyer: (r.per_buyer_min, r.per_buyer_max),
        });
    }
    Ok(())
}
