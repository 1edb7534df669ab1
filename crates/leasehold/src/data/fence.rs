//! The resource's side of fencing: refuse writes from a stale holder.

use std::sync::atomic::{AtomicU64, Ordering};

/// Keeps the highest fencing token seen and refuses lower ones: the check a
/// store must make so that a holder that paused past its TTL cannot write
/// after the next holder did.
///
/// Embed one per protected resource in the service that owns the data (a
/// file store, a database row's `fence` column does the same in SQL:
/// `UPDATE ... WHERE fence <= $1`). The same fence may write many times.
///
/// ```
/// let gate = leasehold::FenceGate::new();
/// assert!(gate.admit(7).is_ok());   // holder with fence 7 writes
/// assert!(gate.admit(9).is_ok());   // the next holder, fence 9
/// let stale = gate.admit(7).unwrap_err(); // the paused holder wakes up
/// assert_eq!((stale.fence, stale.highest), (7, 9));
/// ```
#[derive(Debug, Default)]
pub struct FenceGate {
    highest: AtomicU64,
}

/// A write refused by [`FenceGate::admit`]: its fence is lower than one
/// already seen, so a newer holder has written since.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct StaleFence {
    /// The fence the write carried.
    pub fence: u64,
    /// The highest fence seen.
    pub highest: u64,
}

impl FenceGate {
    /// A gate that has seen nothing yet.
    ///
    /// ```
    /// // One per protected resource, shared by its writers.
    /// static ORDERS: leasehold::FenceGate = leasehold::FenceGate::new();
    /// assert_eq!(ORDERS.highest(), 0);
    /// ```
    pub const fn new() -> FenceGate {
        FenceGate {
            highest: AtomicU64::new(0),
        }
    }

    /// Admits a write carrying `fence` if no higher fence was seen, and
    /// remembers it. Atomic: concurrent writers cannot both pass with a
    /// lower fence after a higher one.
    ///
    /// ```
    /// let gate = leasehold::FenceGate::new();
    /// gate.admit(12).unwrap();
    /// gate.admit(12).unwrap(); // the same holder writes again
    /// let stale = gate.admit(11).unwrap_err();
    /// println!("refused: {stale}");
    /// ```
    pub fn admit(&self, fence: u64) -> Result<(), StaleFence> {
        let highest = self.highest.fetch_max(fence, Ordering::AcqRel);
        if fence < highest {
            Err(StaleFence { fence, highest })
        } else {
            Ok(())
        }
    }

    /// The highest fence admitted so far.
    ///
    /// ```
    /// let gate = leasehold::FenceGate::new();
    /// gate.admit(5).unwrap();
    /// assert_eq!(gate.highest(), 5);
    /// ```
    pub fn highest(&self) -> u64 {
        self.highest.load(Ordering::Acquire)
    }
}

impl std::fmt::Display for StaleFence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "stale fence {}: a holder with fence {} has written since; this holder lost its lease",
            self.fence, self.highest
        )
    }
}

impl std::error::Error for StaleFence {}
